"""Process-wide settings a `crossmedia` process makes once, at its entry point, before FAISS or
torch load (they read them when their OpenMP runtimes start).

OMP_WAIT_POLICY=PASSIVE: FAISS (with its own OpenMP and BLAS) and torch (with another OpenMP)
in one process, on few cores, otherwise leave idle threads spinning on the cores the other one
needs: a batch of 200 exact queries over 300,000 vectors ran at 35 queries/s after `import
torch`, 314 with passive waiting (2 cores; benchmarks/scale.py). A value set by the user wins.
"""

from __future__ import annotations

import os


def passive_openmp() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
