"""Keep a loaded index in step with the store, which is the source of truth.

A crash between a store commit and the index file write leaves the file behind (or, never,
ahead of) the store. On every load a summary of the ids (count, sum, min, max) is compared with
the store's, which costs one SQL aggregate instead of reading every id; only a mismatch pays for
the full comparison and the catch-up, which is saved as delta records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from retrieval.encoders.base import EmbeddingSpace
from retrieval.index import FaissIndex, VectorIndex
from retrieval.index_delta import DeltaOp
from retrieval.store import Store

log = logging.getLogger(__name__)


def id_summary(ids: np.ndarray) -> tuple[int, int, int, int]:
    """(count, sum, min, max) of int64 ids; all zero when empty."""
    if len(ids) == 0:
        return (0, 0, 0, 0)
    return (len(ids), int(ids.sum()), int(ids.min()), int(ids.max()))


def _held(index: VectorIndex) -> np.ndarray:
    return index.unsorted_ids() if isinstance(index, FaissIndex) else index.ids()


def catch_up(store: Store, modality: str, index: VectorIndex) -> list[DeltaOp]:
    """Add the store's ids the index lacks and remove those it has no more; the changes made.
    NotImplementedError when the index type cannot remove ids."""
    if id_summary(_held(index)) == store.id_summary(modality):
        return []
    have = index.ids()
    want = store.ids(modality)
    if np.array_equal(want, have):
        return []
    missing = np.setdiff1d(want, have)
    extra = np.setdiff1d(have, want)
    ops: list[DeltaOp] = []
    if len(extra):
        index.remove(extra)
        ops.append(DeltaOp.remove(extra))
    if len(missing):
        vecs = store.vectors_for(missing.tolist(), index.dim)
        rows = np.stack([vecs[int(i)] for i in missing])
        index.add(missing, rows)
        ops.append(DeltaOp.add(missing, rows))
    return ops


class Reconciler:
    """Mixed into IndexFiles: `store`, `repairs`, `rebuild` and `save_if_possible` are its."""

    store: Store
    repairs: list[str]
    rebuild: Callable[..., VectorIndex]
    save_if_possible: Callable[..., None]

    def _repair_note(self, modality: str, why: str) -> None:
        msg = f"{modality} index: {why}; rebuilt from the vectors in the store"
        self.repairs.append(msg)
        log.warning(msg)

    def in_step(self, modality: str, index: VectorIndex) -> bool:
        return id_summary(_held(index)) == self.store.id_summary(modality)

    def reconcile(self, modality: str, index: VectorIndex, space: EmbeddingSpace) -> VectorIndex:
        """Make the index hold exactly the store's ids (after a crash between commit and save)."""
        if self.in_step(modality, index):
            return index
        if len(np.unique(index.ids())) != index.count():
            self._repair_note(modality, "duplicate ids")
            return self.rebuild(modality, index.factory, space, persist=self.save_if_possible)
        try:
            ops = catch_up(self.store, modality, index)
        except NotImplementedError:
            self._repair_note(modality, "out of step with the store and cannot remove ids in place")
            return self.rebuild(modality, index.factory, space, persist=self.save_if_possible)
        if not ops:
            return index
        added = sum(len(op.ids) for op in ops if op.vectors is not None)
        removed = sum(len(op.ids) for op in ops if op.vectors is None)
        msg = f"{modality} index: caught up with the store (+{added} / -{removed} ids)"
        self.repairs.append(msg)
        log.warning(msg)
        self.save_if_possible(modality, index, space, ops=ops)
        return index
