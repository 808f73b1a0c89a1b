"""The first stage: query vectors against the target modalities' indexes, with filters applied
inside the search (see retrieval/filters.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.filters import compile_filter
from retrieval.hybrid import target_modalities

if TYPE_CHECKING:
    from retrieval.catalogue import Catalogue
    from retrieval.index import VectorIndex

PREFILTER_FRACTION = 0.2  # filters letting through at most this share of an index pre-filter


def vector_search(
    catalogue: Catalogue,
    vectors: np.ndarray,
    target: str,
    k: int,
    filters: Mapping[str, Any] | None = None,
    allowed: Mapping[str, np.ndarray] | None = None,
) -> list[list[tuple[int, float, str]]]:
    """[(id, score, modality)] per query, best first; with `filters`, the top k among the items
    that satisfy them (exact for exact indexes). `allowed` (sorted ids per modality, from
    `allowed_ids`) saves computing the filter's ids again when the caller has them."""
    modalities = target_modalities(target)
    if filters and allowed is None:
        allowed = allowed_ids(catalogue, filters, modalities)
    merged: list[list[tuple[int, float, str]]] = [[] for _ in range(len(vectors))]
    for modality in modalities:
        index = catalogue.index(modality)
        if index.count() == 0:
            continue
        if allowed is None:
            scores, ids = index.search(vectors, min(k, index.count()))
        else:
            scores, ids = filtered_search(index, vectors, k, allowed[modality])
        for q, (sr, ir) in enumerate(zip(scores, ids, strict=True)):
            merged[q].extend(
                (int(i), float(s), modality) for s, i in zip(sr, ir, strict=True) if i >= 0
            )
    return [sorted(m, key=lambda t: (-t[1], t[0]))[:k] for m in merged]


def allowed_ids(
    catalogue: Catalogue, filters: Mapping[str, Any], modalities: Sequence[str]
) -> dict[str, np.ndarray]:
    """Sorted ids of the items of each modality that satisfy `filters` (one SQL query each)."""
    condition = compile_filter(filters)
    return {m: catalogue.store.filter_ids(condition, m) for m in modalities}


def filtered_search(
    index: VectorIndex, vectors: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Top k among `allowed` ids. A selective filter becomes an ID selector inside the index
    (pre-filter); a broad one a post-filter with adaptive over-fetch, doubling until every query
    has k allowed hits or the whole index was read."""
    n = index.count()
    if len(allowed) == 0:
        return np.zeros((len(vectors), 0), np.float32), np.zeros((len(vectors), 0), np.int64)
    if len(allowed) <= PREFILTER_FRACTION * n:
        return index.search(vectors, min(k, len(allowed)), among=allowed)
    fetch = min(n, max(2 * k, int(np.ceil(k * n / len(allowed) * 1.5))))
    while True:
        scores, ids = index.search(vectors, fetch)
        ok = np.isin(ids, allowed)
        if fetch >= n or bool((ok.sum(axis=1) >= min(k, len(allowed))).all()):
            break
        fetch = min(n, fetch * 2)
    out_s = np.full((len(vectors), k), -np.inf, np.float32)
    out_i = np.full((len(vectors), k), -1, np.int64)
    for q in range(len(vectors)):
        keep = np.flatnonzero(ok[q])[:k]
        out_s[q, : len(keep)], out_i[q, : len(keep)] = scores[q, keep], ids[q, keep]
    return out_s, out_i


def lexical_search(
    catalogue: Catalogue, words: str, target: str, k: int
) -> list[tuple[int, float, str]]:
    """Full-text hits for `target`, captions included (evidence for the media they describe):
    [(id, score, modality)], best first."""
    wanted = target_modalities(target) if target == "any" else sorted({target, "text"})
    hits = catalogue.store.lexical_search(words, k, modalities=wanted)
    modality = catalogue.store.modalities_of([i for i, _ in hits])
    return [(i, s, modality[i]) for i, s in hits if i in modality]
