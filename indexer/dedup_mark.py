"""Marking near-duplicates at ingestion (`crossmedia index --mark-duplicates`): a new media item
whose content hash equals a stored item's, or whose vector is within the threshold of a stored
item or of an earlier item of the same batch, gets `attrs.duplicate_of` = the key of that
group's first item. The mark is written with the item (the same crash-safe batch), so search
can collapse the group (`crossmedia search --collapse-duplicates`, API `collapse`)."""

from __future__ import annotations

import numpy as np

from retrieval.catalogue import Catalogue
from retrieval.dedup import DUPLICATE_OF, pairs_within
from retrieval.store import NewItem

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
    by_hash = store.ids_with_hashes(modality, [it.content_hash for it in items])
    vectors = np.stack([np.asarray(it.vector, dtype=np.float32) for it in items])
    index = cat.index(modality)
    if index.count():
        scores, nbrs = index.search(vectors, min(NEIGHBOURS, index.count()))
    else:
        scores = np.zeros((len(items), 0), np.float32)
        nbrs = np.zeros((len(items), 0), np.int64)
    wanted = set(by_hash.values()) | {int(j) for j in nbrs[scores >= threshold] if j >= 0}
    records = store.get_items(sorted(wanted))
    rep: dict[int, str] = {}  # batch position -> the key of its group's first item
    for i, it in enumerate(items):
        candidates = [by_hash.get(it.content_hash)]
        candidates += [int(j) for s, j in zip(scores[i], nbrs[i], strict=True) if s >= threshold]
        for j in candidates:
            rec = records.get(j) if j is not None else None
            if rec is not None and rec.key != it.key:
                rep[i] = str(rec.attrs.get(DUPLICATE_OF) or rec.key)
                break
    # Within the batch: the earlier item stands for the later one (unless it repeats a stored one).
    for i, j in pairs_within(vectors, threshold):
        if j not in rep and items[i].key != items[j].key:
            rep[j] = rep.get(i, items[i].key)
    for i, key in rep.items():
        items[i].attrs = {**items[i].attrs, DUPLICATE_OF: key}
    return len(rep)
