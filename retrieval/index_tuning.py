"""Set an approximate index's search knob (nprobe for IVF, efSearch for HNSW) to the smallest
value whose recall@10 against exact search reaches the target, measured on a sample of the
index's own vectors used as queries (each query's own id left out of both lists)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from retrieval.index.faiss_index import FaissIndex
from retrieval.index.faiss_settings import tune_faiss

RECALL_TARGET = 0.95
MARGIN = 0.01  # the sample's recall must clear the target by this much (sampling noise)
TUNING_QUERIES = 500
K = 10


def exact_neighbours(queries: np.ndarray, vecs: np.ndarray, k: int) -> np.ndarray:
    """Row positions of the exact top-k by inner product, (Q, k)."""
    import faiss

    tune_faiss()
    _, pos = faiss.knn(queries, vecs, k, metric=faiss.METRIC_INNER_PRODUCT)
    return pos


def recall_at(found: np.ndarray, truth: np.ndarray, own: np.ndarray, k: int = K) -> float:
    """Mean share of each query's true top-k (own id excluded) present in its found top-k."""
    hits = 0.0
    for f, t, me in zip(found, truth, own, strict=True):
        t = [i for i in t if i != me][:k]
        f = [i for i in f if i != me][:k]
        hits += len(set(t) & set(f)) / max(1, len(t))
    return hits / max(1, len(found))


def tune(
    index: FaissIndex,
    ids: np.ndarray,
    vecs: np.ndarray,
    target: float = RECALL_TARGET,
    queries: int = TUNING_QUERIES,
) -> dict[str, Any]:
    """Choose and set the knob; returns the record kept in `index_info.json`."""
    knob, values = index.knob_values()
    if knob is None or len(ids) <= K + 1:
        return {"exact": True, "recall_at_10": 1.0}
    pick = np.sort(np.random.default_rng(1).choice(len(ids), min(queries, len(ids)), False))
    q, own = np.ascontiguousarray(vecs[pick]), ids[pick]
    truth = ids[exact_neighbours(q, vecs, K + 1)]
    sweep: list[list[float]] = []
    chosen = values[-1]
    for value in values:
        index.set_search_params(**{knob: value})
        recall = recall_at(index.search(q, K + 1)[1], truth, own)
        sweep.append([value, round(recall, 4)])
        if recall >= target + MARGIN:
            chosen = value
            break
    index.set_search_params(**{knob: chosen})
    recall = next(r for v, r in sweep if v == chosen)
    return {
        "exact": False,
        knob: chosen,
        "recall_at_10": recall,
        "target": target,
        "met": recall >= target,
        "queries": len(pick),
        "sweep": sweep,
        "measured_at": time.time(),
    }
