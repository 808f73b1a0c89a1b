"""Building an index of a given type over a modality's stored vectors, with its search knobs
set to meet a recall target (`retrieval.index_tuning`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from retrieval.index import FaissIndex, create_index
from retrieval.index_tuning import tune
from retrieval.store import Store

DEFAULT_FACTORY = "Flat"
TRAIN_PER_LIST = 40  # training vectors per IVF list (FAISS warns below 39)
TRAIN_MIN = 20_000
KMEANS_ITERATIONS = 10  # FAISS's default is 25: 2.5x the training time, no recall the tuner
# cannot buy back with a slightly larger nprobe (benchmarks/scale.py)
ADD_CHUNK = 65_536
CROSS_QUERIES = 500  # caption vectors that also tune a media index's search knob


def stored_vectors(store: Store, modality: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Every stored (id, vector) of `modality`: ids int64 (N,), vectors float32 (N, dim)."""
    ids, vecs = [], []
    for i, v in store.iter_vectors(modality, dim, chunk=50_000):
        ids.append(i)
        vecs.append(v)
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    return np.concatenate(ids), np.concatenate(vecs)


def build_index(
    store: Store, modality: str, factory: str, dim: int
) -> tuple[FaissIndex, dict[str, Any]]:
    ids, vecs = stored_vectors(store, modality, dim)
    cross = store.sample_vectors("text", CROSS_QUERIES, dim) if modality != "text" else None
    return build_from_arrays(factory, dim, ids, vecs, cross)


def build_from_arrays(
    factory: str, dim: int, ids: np.ndarray, vecs: np.ndarray, cross: np.ndarray | None = None
) -> tuple[FaissIndex, dict[str, Any]]:
    """An index of `factory` holding `ids` -> `vecs`, trained on a sample of them when its type
    needs training (exact search while there is nothing to train on), tuned to the recall
    target. RuntimeError when FAISS cannot train it (e.g. fewer vectors than IVF lists)."""
    index = create_index(factory, dim)
    if index.needs_training and len(vecs) == 0:
        index = create_index(DEFAULT_FACTORY, dim)
    assert isinstance(index, FaissIndex)
    if index.needs_training:
        index.train(training_sample(index, vecs))
    for start in range(0, len(ids), ADD_CHUNK):
        index.add(ids[start : start + ADD_CHUNK], vecs[start : start + ADD_CHUNK])
    return index, tune(index, ids, vecs, cross=cross)


def training_sample(index: FaissIndex, vecs: np.ndarray) -> np.ndarray:
    lists = index.ivf_lists() or 0
    want = max(TRAIN_MIN, TRAIN_PER_LIST * lists)
    index.set_training_iterations(KMEANS_ITERATIONS)
    if len(vecs) <= want:
        return vecs
    pick = np.random.default_rng(0).choice(len(vecs), size=want, replace=False)
    return vecs[np.sort(pick)]
