"""The vector-index interface: add / search / remove / count / save / load.

Vectors are float32 rows, L2-normalised by the caller, so inner product is cosine similarity.
Ids are int64 database ids and live inside the index.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class VectorIndex(ABC):
    dim: int
    factory: str

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows; `ids` int64 (N,), `vectors` float32 (N, dim). Ids must be new."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, among: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores float32 (Q, k), ids int64 (Q, k)), -1 ids pad.
        `among` (sorted int64 ids) restricts the search to those ids (a pre-filter)."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove the given ids; returns how many were present."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def ids(self) -> np.ndarray:
        """All ids in the index, sorted int64."""

    @abstractmethod
    def save(self, path: Path) -> None: ...

    @classmethod
    @abstractmethod
    def load(cls, path: Path, dim: int, factory: str) -> VectorIndex: ...

    @property
    def needs_training(self) -> bool:
        return False

    def train(self, vectors: np.ndarray) -> None:  # noqa: B027 - optional verb
        """Train quantisers on representative vectors (no-op for exact indexes)."""


def check_batch(ids: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"Expected vectors of shape (N, {dim}), got {vectors.shape}.")
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors.")
    return ids, vectors
