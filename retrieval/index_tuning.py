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
    cross: np.ndarray | None = None,
) -> dict[str, Any]:
    """Choose and set the knob; returns the record kept in `index_info.json`. `cross`: queries
    of another modality (the catalogue's captions, for a media index), which sit farther from
    the indexed vectors than they sit from each other: the knob must meet the target for them
    too (cross-modal queries are where partition-based search loses recall first)."""
    knob, values = index.knob_values()
    if len(ids) <= K + 1 or (knob is None and index.is_exact()):
        return {"exact": True, "recall_at_10": 1.0}
    pick = np.sort(np.random.default_rng(1).choice(len(ids), min(queries, len(ids)), False))
    sets = [(np.ascontiguousarray(vecs[pick]), ids[pick])]
    if cross is not None and len(cross):
        sets.append((np.ascontiguousarray(cross, np.float32), np.full(len(cross), -1)))
    truths = [ids[exact_neighbours(q, vecs, K + 1)] for q, _ in sets]
    sweep: list[list[float]] = []
    for value in values or [0]:  # no knob (fp16 or SQ8 codes scanned exhaustively): measured once
        if knob is not None:
            index.set_search_params(**{knob: value})
        found = [index.search(q, K + 1)[1] for q, _ in sets]
        recalls = [recall_at(f, t, own) for f, t, (_, own) in zip(found, truths, sets, strict=True)]
        sweep.append([value, *(round(r, 4) for r in recalls)])
        if min(recalls) >= target + MARGIN:
            break
    chosen = sweep[-1]
    if knob is not None:
        index.set_search_params(**{knob: int(chosen[0])})
    record = {
        "exact": False,
        knob or "knob": int(chosen[0]) if knob else None,
        "recall_at_10": chosen[1],
        "target": target,
        "met": min(chosen[1:]) >= target,
        "queries": len(pick),
        "sweep": sweep,
        "measured_at": time.time(),
    }
    if len(sets) > 1:
        record.update(cross_modal_queries=len(sets[1][0]), cross_modal_recall_at_10=chosen[2])
    return record


def describe_tuning(tuning: dict[str, Any] | None) -> str:
    """One line for `crossmedia info`: how the search knobs were set and what recall they gave."""
    if not tuning:
        return "recall not measured"
    if tuning.get("exact"):
        return "exact search (recall@10 = 1)"
    knob = next((f"{name}={tuning[key]}: " for key, name in KNOBS if key in tuning), "")
    cross = tuning.get("cross_modal_recall_at_10")
    also = "" if cross is None else f", {cross:.3f} on {tuning['cross_modal_queries']} captions"
    return (
        f"{knob}recall@10 {tuning['recall_at_10']:.3f} against exact search on "
        f"{tuning['queries']} of its own vectors{also} (target {tuning['target']})"
    )


KNOBS = (("nprobe", "nprobe"), ("ef_search", "efSearch"))
