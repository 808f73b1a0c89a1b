"""Synthetic catalogues for benchmarks/scale.py: unit vectors in the starter's 256-d space drawn
around 10,000 random centres (clustered, as real embeddings are), with an ids-only manifest.

Each vector is a centre plus isotropic Gaussian noise of norm SPREAD, renormalised: a vector sits
at cosine ~0.89 from its centre and ~0.8 from its cluster mates, ~0 from other clusters. Held-out
queries are fresh draws from the same mixture. Files are kept in the user cache directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from platformdirs import user_cache_dir

DIM = 256
MODEL = "starter-v2"  # the default model (no re-ranker ships for it: `search` runs as users run it)
CENTRES = 10_000
SPREAD = 0.5


def cache_root() -> Path:
    root = Path(os.environ.get("CROSSMEDIA_CACHE_DIR") or user_cache_dir("crossmedia"))
    return root / "bench" / "scale"


def _centres() -> np.ndarray:
    c = np.random.default_rng(1).standard_normal((CENTRES, DIM)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def draw(n: int, seed: int) -> np.ndarray:
    """n unit vectors of the mixture, (n, DIM) float32."""
    rng, centres = np.random.default_rng(seed), _centres()
    out = np.empty((n, DIM), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        noise = rng.standard_normal((m, DIM)).astype(np.float32) * (SPREAD / np.sqrt(DIM))
        v = centres[rng.integers(0, CENTRES, m)] + noise
        out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def dataset(n: int) -> tuple[Path, Path]:
    """(vectors.npy, items.jsonl) for n items, made once and cached."""
    folder = cache_root() / f"n{n}"
    vectors, manifest = folder / "vectors.npy", folder / "items.jsonl"
    if not (vectors.is_file() and manifest.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.tmp.npy", draw(n, seed=0))
        with (folder / "items.tmp.jsonl").open("w") as f:
            f.writelines(json.dumps({"id": f"v{i}"}) + "\n" for i in range(n))
        (folder / "vectors.tmp.npy").replace(vectors)
        (folder / "items.tmp.jsonl").replace(manifest)
    return vectors, manifest


def queries(n: int = 500) -> np.ndarray:
    return draw(n, seed=12345)


def exact_top(queries_: np.ndarray, vectors: np.ndarray, k: int = 10) -> np.ndarray:
    """Row positions of the exact top-k (inner product), through BLAS."""
    import faiss

    from retrieval.index.faiss_settings import tune_faiss

    tune_faiss()
    return faiss.knn(queries_, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth, strict=True)]))
