"""`crossmedia dedup` at scale (issue 17): time and memory of the grouping on a large catalogue,
and its recall of planted copies, through the real commands in subprocesses.

The vectors are synthetic (a real catalogue of this size is not available here) but shaped like
an embedding space: N/20 topic centres, items at cosine about 0.75 to their centre (so about
0.55 between items of one topic: close, not copies), and one planted near-copy (cosine about
0.99) for every 50th item. They go in with `crossmedia import-vectors` as images with no file
(the index type is the automatic one for that size), so `crossmedia dedup --json` decides on
the vectors alone (cosine >= 0.97): this measures the index part (candidates, union-find) at
scale; the pixel check costs one thumbnail per image with a candidate (dedup_bench.py).

    python -m benchmarks.dedup_scale [--n 200000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_md import load_note, replace_section

ROOT = Path(__file__).resolve().parents[1]
DIM = 256  # the starter model's space


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(n, DIM) unit rows and the planted (original, copy) row pairs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 20, 1), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    n_copies = n // 51
    base = n - n_copies
    x = centres[rng.integers(0, len(centres), base)]
    x = x + 0.9 * rng.standard_normal((base, DIM)).astype(np.float32) / np.sqrt(DIM)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    originals = np.arange(0, n_copies * 50, 50)
    copies = x[originals] + 0.15 * rng.standard_normal((n_copies, DIM)).astype(
        np.float32
    ) / np.sqrt(DIM)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    pairs = [(int(o), base + i) for i, o in enumerate(originals)]
    return np.concatenate([x, copies]).astype(np.float32), pairs


def run(*args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """`crossmedia ARGS`: (process, wall seconds, peak RSS of children in GiB so far)."""
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "api.cli", *args], cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"crossmedia {args[0]} failed:\n{proc.stderr[-3000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return proc, wall, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "dedup_scale.json"
    )
    args = ap.parse_args()
    vectors, planted = synthetic(args.n)
    with tempfile.TemporaryDirectory(prefix="crossmedia-dedup-scale-") as tmp:
        npy, manifest, data = Path(tmp) / "v.npy", Path(tmp) / "items.jsonl", Path(tmp) / "data"
        np.save(npy, vectors)
        manifest.write_text("".join(json.dumps({"id": f"r{i}"}) + "\n" for i in range(args.n)))
        _, t_import, _ = run(
            "import-vectors",
            str(npy),
            "--manifest",
            str(manifest),
            "--model",
            "starter",
            "--data-dir",
            str(data),
            "--json",
        )
        info = json.loads(run("info", "--data-dir", str(data), "--json")[0].stdout)
        proc, t_dedup, rss = run("dedup", "--data-dir", str(data), "--modality", "image", "--json")
    found = json.loads(proc.stdout)
    groups = [sorted(int(k[1:]) for k in g["keys"]) for g in found["groups"]]
    together = {i: frozenset(g) for g in groups for i in g}
    hit = sum(c in together.get(o, ()) for o, c in planted)
    planted_set = {frozenset(p) for p in planted}
    extra = sum(frozenset(g) not in planted_set for g in groups)
    result = {
        "n": args.n,
        "index": _index_summary(info.get("indexes", {}).get("image") or {}),
        "import_s": round(t_import, 1),
        "dedup_s": round(t_dedup, 1),
        "dedup_peak_rss_gib": round(rss, 2),
        "threshold": found["threshold"],
        "planted_pairs": len(planted),
        "planted_found": hit,
        "groups": len(groups),
        "groups_not_planted": extra,
        "machine": load_note(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(section(result))
    replace_section("dedup_scale", section(result))


def _index_summary(info: dict) -> dict:
    search = info.get("search") or {}
    return {
        "factory": info.get("factory"),
        "count": info.get("count"),
        **{k: search.get(k) for k in ("nprobe", "recall_at_10")},
    }


def section(r: dict) -> str:
    idx = r["index"]
    return (
        "## Near-duplicates at scale (`crossmedia dedup`)\n\n"
        f"{r['n']:,} synthetic image vectors (starter space, no files: vectors alone at cosine "
        f">= 0.97), {idx['factory']} index (nprobe {idx['nprobe']}, recall@10 "
        f"{idx['recall_at_10']}): `crossmedia dedup` took {r['dedup_s']:.0f} s wall (peak "
        f"RSS of the larger of the two commands {r['dedup_peak_rss_gib']} GiB); it found {r['planted_found']} of "
        f"{r['planted_pairs']} planted copies and {r['groups_not_planted']} other groups "
        f"(import: {r['import_s']:.0f} s). {r['machine']}.\n\n"
        f"Reproduce: `python -m benchmarks.dedup_scale --n {r['n']}`. "
        "JSON: benchmarks/results/dedup_scale.json."
    )


if __name__ == "__main__":
    main()
