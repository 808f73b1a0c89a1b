"""Retrieval metrics for queries with several relevant items: recall@k and mAP@k.

recall@k: a query counts as correct when ANY of its relevant items is in its top k.
AP@k: sum over ranks r <= k of precision@r at each relevant hit, divided by min(#relevant, k);
mAP@k is its mean over queries. Queries without relevant items are an error, not a silent zero.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def rank_ids(scores: np.ndarray, gallery_ids: Sequence[Hashable], k: int) -> list[list[Hashable]]:
    """Top-k gallery ids per query row of `scores` (Q, G), best first; ties broken by position."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(gallery_ids):
        raise ValueError(f"scores must be (Q, {len(gallery_ids)}), got {scores.shape}.")
    k = min(k, scores.shape[1])
    # Stable sort on the negated scores keeps the earlier gallery item first on ties.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[gallery_ids[j] for j in row] for row in order]


def _check(
    ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Iterable[Hashable]]
) -> list[set]:
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} ranked lists but {len(relevant)} relevance sets.")
    sets = [set(r) for r in relevant]
    empty = [i for i, s in enumerate(sets) if not s]
    if empty:
        raise ValueError(
            f"Queries {empty[:5]} have no relevant item; drop them from the benchmark."
        )
    return sets


def recall_at_k(
    ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Iterable[Hashable]], k: int
) -> float:
    sets = _check(ranked, relevant)
    if not sets:
        return float("nan")
    return float(np.mean([any(x in s for x in r[:k]) for r, s in zip(ranked, sets, strict=True)]))


def average_precision_at_k(ranked: Sequence[Hashable], relevant: set, k: int = 10) -> float:
    hits, total = 0, 0.0
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / min(len(relevant), k)


def map_at_k(
    ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Iterable[Hashable]], k: int = 10
) -> float:
    sets = _check(ranked, relevant)
    if not sets:
        return float("nan")
    return float(
        np.mean([average_precision_at_k(r, s, k) for r, s in zip(ranked, sets, strict=True)])
    )


def retrieval_report(
    scores: np.ndarray,
    gallery_ids: Sequence[Hashable],
    relevant: Sequence[Iterable[Hashable]],
    ks: Sequence[int] = (1, 5, 10),
    map_k: int = 10,
) -> dict[str, float]:
    """R@k for each k, mAP@map_k, #queries, gallery size and chance R@1 / R@max(ks).

    Chance is the expected recall of a uniformly random ranking, averaged over queries:
    1 - C(G - n_rel, k) / C(G, k) for a query with n_rel relevant items in a gallery of G.
    """
    ranked = rank_ids(scores, gallery_ids, max(max(ks), map_k))
    out: dict[str, float] = {f"R@{k}": recall_at_k(ranked, relevant, k) for k in ks}
    out[f"mAP@{map_k}"] = map_at_k(ranked, relevant, map_k)
    sets = [set(r) for r in relevant]
    g = len(gallery_ids)
    out["queries"] = len(sets)
    out["gallery"] = g
    for k in (1, max(ks)):
        out[f"chance_R@{k}"] = float(np.mean([chance_recall(g, len(s), k) for s in sets]))
    return out


def chance_recall(gallery: int, n_relevant: int, k: int) -> float:
    """P(at least one of n_relevant items lands in a random top k of `gallery`)."""
    miss = 1.0
    for i in range(min(k, gallery)):
        miss *= max(gallery - n_relevant - i, 0) / (gallery - i)
    return 1.0 - miss
