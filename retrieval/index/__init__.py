"""Vector indexes: a FAISS implementation and the exact NumPy oracle, built by `create_index`."""

from __future__ import annotations

from retrieval.index.base import VectorIndex
from retrieval.index.exact import ExactIndex
from retrieval.index.faiss_index import FaissIndex, gpu_available


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


EXACT_BELOW = 100_000  # vectors; exact search is chosen below this size


def auto_factory(n_vectors: int) -> str:
    """A sensible index type for a catalogue of this size (exact below EXACT_BELOW vectors)."""
    if n_vectors < EXACT_BELOW:
        return "Flat"
    nlist = int(4 * n_vectors**0.5)
    return f"IVF{nlist},Flat"


def auto_nprobe(factory: str) -> int | None:
    """Lists probed by an automatically chosen IVF index: 1/16 of them (FAISS's default of one
    list would lose most of the exact top k)."""
    if not factory.startswith("IVF"):
        return None
    nlist = int(factory[3:].split(",")[0].split("_")[0])
    return max(1, nlist // 16)


__all__ = [
    "ExactIndex",
    "FaissIndex",
    "VectorIndex",
    "auto_factory",
    "auto_nprobe",
    "create_index",
    "gpu_available",
]
