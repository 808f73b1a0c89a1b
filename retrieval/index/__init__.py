"""Vector indexes: a FAISS implementation and the exact NumPy oracle, built by `create_index`."""

from __future__ import annotations

import os

import numpy as np

from retrieval.index.base import VectorIndex
from retrieval.index.exact import ExactIndex
from retrieval.index.faiss_index import FaissIndex
from retrieval.index.faiss_settings import gpu_available


def create_index(factory: str, dim: int, use_gpu: bool | None = None) -> VectorIndex:
    """`factory` is a FAISS factory string, or "exact" for the NumPy brute-force oracle."""
    if factory == "exact":
        return ExactIndex(dim)
    try:
        return FaissIndex(dim, factory, use_gpu=use_gpu)
    except RuntimeError as exc:
        raise ValueError(
            f"Bad FAISS factory string {factory!r}: {exc}. Examples: 'Flat', 'IVF256,Flat', "
            "'HNSW32', 'IVF1024,PQ32'."
        ) from exc


# Exact search below this many vectors: a query over 50,000 256-d vectors takes 4.8 ms (k=50, one
# thread, this 2-core machine), 9.2 ms at 100,000, while IVF stays under 1 ms (benchmarks/scale.py).
EXACT_BELOW = 50_000
HNSW_QUANTIZER_FROM = 4_000_000  # vectors; scanning 2,048 centroids is cheaper below this
MEMORY_SHARE = 0.5  # above this share of physical memory as float32, vectors are stored as SQ8


def auto_factory(n_vectors: int, dim: int = 256, memory_bytes: int | None = None) -> str:
    """A sensible index type for a catalogue of this size: exact search below EXACT_BELOW;
    above it IVF with about 2 sqrt(N) lists (a power of two; an HNSW coarse quantiser from four
    million vectors on, where scanning the centroids starts to cost), full vectors while they
    fit in half the memory, SQ8 codes (4x smaller) beyond."""
    if n_vectors < EXACT_BELOW:
        return "Flat"
    nlist = 1 << max(8, round(np.log2(2 * n_vectors**0.5)))
    quantizer = "_HNSW32" if n_vectors >= HNSW_QUANTIZER_FROM else ""
    memory = physical_memory() if memory_bytes is None else memory_bytes
    storage = "SQ8" if n_vectors * dim * 4 > MEMORY_SHARE * memory else "Flat"
    return f"IVF{nlist}{quantizer},{storage}"


def auto_lists(factory: str) -> int | None:
    """The list count of an automatically chosen factory string, None for other types."""
    if not factory.startswith("IVF"):
        return None
    return int(factory[3:].split(",")[0].split("_")[0])


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


__all__ = [
    "ExactIndex",
    "FaissIndex",
    "VectorIndex",
    "auto_factory",
    "auto_lists",
    "create_index",
    "gpu_available",
]
