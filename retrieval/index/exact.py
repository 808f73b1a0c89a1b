"""Exact brute-force index in NumPy: the oracle every approximate or FAISS path is tested against."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.index.base import VectorIndex, check_batch


class ExactIndex(VectorIndex):
    factory = "exact"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = np.zeros((0,), dtype=np.int64)
        self._vecs = np.zeros((0, dim), dtype=np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = check_batch(ids, vectors, self.dim)
        if np.intersect1d(ids, self._ids).size or len(np.unique(ids)) != len(ids):
            raise ValueError("Duplicate ids added to the index.")
        self._ids = np.concatenate([self._ids, ids])
        self._vecs = np.concatenate([self._vecs, vectors])

    def search(
        self, queries: np.ndarray, k: int, among: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        n_q = len(queries)
        scores = np.full((n_q, k), -np.inf, dtype=np.float32)
        ids = np.full((n_q, k), -1, dtype=np.int64)
        keep = np.ones(len(self._ids), bool) if among is None else np.isin(self._ids, among)
        own_ids, vecs = self._ids[keep], self._vecs[keep]
        if len(own_ids) == 0 or k <= 0:
            return scores, ids
        sims = queries @ vecs.T  # (Q, N)
        kk = min(k, sims.shape[1])
        # Ties are broken by id so the oracle is deterministic.
        order = np.lexsort((np.broadcast_to(own_ids, sims.shape), -sims), axis=1)[:, :kk]
        scores[:, :kk] = np.take_along_axis(sims, order, axis=1)
        ids[:, :kk] = own_ids[order]
        return scores, ids

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        removed = int((~keep).sum())
        self._ids, self._vecs = self._ids[keep], self._vecs[keep]
        return removed

    def count(self) -> int:
        return len(self._ids)

    def ids(self) -> np.ndarray:
        return np.sort(self._ids)

    def save(self, path: Path) -> None:
        with Path(path).open("wb") as f:
            np.savez(f, ids=self._ids, vecs=self._vecs)

    @classmethod
    def load(cls, path: Path, dim: int, factory: str = "exact") -> ExactIndex:
        data = np.load(Path(path))
        index = cls(dim)
        index._ids, index._vecs = data["ids"].astype(np.int64), data["vecs"].astype(np.float32)
        return index
