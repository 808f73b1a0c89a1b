"""The peers in benchmarks/scale.py, on the same vectors and queries in the same run: FAISS IVF
and HNSW used directly, and hnswlib (`pip install -e '.[bench]'`). Each is swept over its search
knob; QPS is one query at a time on one thread (a server's view), recall@10 against exact."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.scale_data import recall

K = 10


def _sweep(
    name: str, build_s: float, set_knob: Callable[[int], None], search: Callable[[np.ndarray], np.ndarray],
    knobs: list[int], queries: np.ndarray, truth: np.ndarray,
) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for value in knobs:
        set_knob(value)
        search(queries[:5])
        t = time.perf_counter()
        found = np.concatenate([search(q[None]) for q in queries])
        qps = len(queries) / (time.perf_counter() - t)
        rows.append({"method": name, "knob": value, "recall": round(recall(found, truth), 4),
                     "qps": round(qps, 1), "build_s": round(build_s, 1)})  # fmt: skip
    return rows


def faiss_ivf(vecs: np.ndarray, nlist: int, queries: np.ndarray, truth: np.ndarray) -> list:
    import faiss

    t = time.perf_counter()
    index = faiss.index_factory(vecs.shape[1], f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = 10
    sample = vecs[np.random.default_rng(0).choice(len(vecs), min(len(vecs), 32 * nlist), False)]
    index.train(sample)
    index.add(vecs)
    build = time.perf_counter() - t

    def knob(v: int) -> None:
        ivf.nprobe = v

    return _sweep(f"FAISS IVF{nlist},Flat", build, knob, lambda q: index.search(q, K)[1],
                  [1, 2, 4, 8, 16, 32, 64], queries, truth)  # fmt: skip


def faiss_hnsw(vecs: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(vecs.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(vecs)
    build = time.perf_counter() - t

    def knob(v: int) -> None:
        index.hnsw.efSearch = v

    return _sweep("FAISS HNSW32", build, knob, lambda q: index.search(q, K)[1],
                  [16, 32, 64, 128, 256], queries, truth)  # fmt: skip


def hnswlib_peer(vecs: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list:
    try:
        import hnswlib
    except ImportError:
        return [{"method": "hnswlib", "skipped": "not installed: pip install -e '.[bench]'"}]
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=vecs.shape[1])
    index.init_index(max_elements=len(vecs), M=16, ef_construction=100)
    index.add_items(vecs, np.arange(len(vecs)), num_threads=2)
    build = time.perf_counter() - t
    index.set_num_threads(1)
    return _sweep("hnswlib M16", build, index.set_ef, lambda q: index.knn_query(q, K)[0],
                  [16, 32, 64, 128, 256], queries, truth)  # fmt: skip


def ours(cat_index: Any, pos_of_id: Callable[[np.ndarray], np.ndarray], queries: np.ndarray,
         truth: np.ndarray) -> list:  # fmt: skip
    """The catalogue's own index through its wrapper, swept like the peers."""
    lists = cat_index.ivf_lists()
    if lists is None:
        return []
    chosen = cat_index._inner().nprobe

    def search(q: np.ndarray) -> np.ndarray:
        return pos_of_id(cat_index.search(q, K)[1])

    rows = _sweep(f"crossmedia {cat_index.factory}", 0.0,
                  lambda v: cat_index.set_search_params(nprobe=v), search,
                  [1, 2, 4, 8, 16, 32, 64], queries, truth)  # fmt: skip
    cat_index.set_search_params(nprobe=chosen)
    return rows


def plot(rows: list[dict[str, Any]], path: Any, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in rows if "qps" in r):
        pts = [(r["recall"], r["qps"]) for r in rows if r.get("method") == method]
        ax.plot(*zip(*pts, strict=True), marker="o", label=method)
    ax.axvline(0.95, color="grey", linestyle=":", label="recall@10 = 0.95")
    ax.set(xlabel="recall@10 against exact search", ylabel="queries/s (1 thread, 1 query at a time)",
           yscale="log", title=f"{n:,} clustered 256-d vectors, this 2-core machine")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
