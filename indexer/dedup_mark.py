"""Marking near-duplicates at ingestion (`crossmedia index --mark-duplicates`): a new media item
that is a copy of a stored item, or of an earlier item of the same batch, gets
`attrs.duplicate_of` = the key of that group's first item. A copy is what `crossmedia dedup`
calls one (retrieval/dedup.py): an equal content hash; for images a vector neighbour at cosine
>= CANDIDATE_COSINE confirmed on pixels at >= the threshold; otherwise a vector cosine >=
VECTOR_THRESHOLD. The mark is written with the item (the same crash-safe batch), so search can
collapse the group (`crossmedia search --collapse-duplicates`, API `collapse`)."""

from __future__ import annotations

import numpy as np

from retrieval.catalogue import Catalogue
from retrieval.dedup import (
    CANDIDATE_COSINE,
    DUPLICATE_OF,
    VECTOR_THRESHOLD,
    confirm_pairs,
    pairs_within,
)
from retrieval.fingerprint import ViewCache, views_of_file
from retrieval.store import NewItem
from retrieval.store.dup_reads import ids_with_hashes

NEIGHBOURS = 4


def mark_duplicates(cat: Catalogue, items: list[NewItem], threshold: float) -> int:
    """Set `attrs.duplicate_of` on the items (vectors filled in) that repeat another; the count."""
    marked = 0
    for modality in sorted({it.modality for it in items}):
        group = [it for it in items if it.modality == modality and DUPLICATE_OF not in it.attrs]
        if group:
            marked += _mark(cat, modality, group, threshold)
    return marked


def _mark(cat: Catalogue, modality: str, items: list[NewItem], threshold: float) -> int:
    store = cat.store
    by_hash = ids_with_hashes(store, modality, [it.content_hash for it in items])
    vectors = np.stack([np.asarray(it.vector, dtype=np.float32) for it in items])
    # New items go in the view cache under negative ids: -1 - their batch position.
    cache = ViewCache()
    if modality == "image":
        for i, it in enumerate(items):
            cache.put(-1 - i, views_of_file(it.path) if it.path else None)
    stored = _stored_copies(cat, modality, vectors, threshold, cache)
    records = store.get_items(sorted(set(by_hash.values()) | {j for js in stored for j in js}))
    rep: dict[int, str] = {}  # batch position -> the key of its group's first item
    for i, it in enumerate(items):
        for j in [by_hash.get(it.content_hash), *stored[i]]:
            rec = records.get(j) if j is not None else None
            if rec is not None and rec.key != it.key:
                rep[i] = str(rec.attrs.get(DUPLICATE_OF) or rec.key)
                break
    # Within the batch: the earlier item stands for the later one (unless it repeats a stored one).
    floor = CANDIDATE_COSINE if modality == "image" else VECTOR_THRESHOLD
    pairs = [
        (-1 - i, -1 - j, float(vectors[i] @ vectors[j])) for i, j in pairs_within(vectors, floor)
    ]
    if modality == "image":
        pairs = confirm_pairs(cat, pairs, threshold, cache=cache)
    for a, b, _ in pairs:
        i, j = -1 - a, -1 - b
        if j not in rep and items[i].key != items[j].key:
            rep[j] = rep.get(i, items[i].key)
    for i, key in rep.items():
        items[i].attrs = {**items[i].attrs, DUPLICATE_OF: key}
    return len(rep)


def _stored_copies(
    cat: Catalogue, modality: str, vectors: np.ndarray, threshold: float, cache: ViewCache
) -> list[list[int]]:
    """Per new item (row of `vectors`), the stored ids that are copies of it, best first."""
    index = cat.index(modality)
    if not index.count():
        return [[] for _ in vectors]
    scores, nbrs = index.search(vectors, min(NEIGHBOURS, index.count()))
    floor = CANDIDATE_COSINE if modality == "image" else VECTOR_THRESHOLD
    out = []
    for i in range(len(vectors)):
        pairs = [
            (-1 - i, int(j), float(s))
            for s, j in zip(scores[i], nbrs[i], strict=True)
            if j >= 0 and s >= floor
        ]
        if modality == "image":
            pairs = confirm_pairs(cat, pairs, threshold, cache=cache)
        out.append([j for _, j, _ in pairs])
    return out
