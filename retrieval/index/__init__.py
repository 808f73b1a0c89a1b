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


def auto_factory(n_vectors: int) -> str:
    """A sensible index type for a catalogue of this size (exact below 100k vectors)."""
    if n_vectors < 100_000:
        return "Flat"
    nlist = int(4 * n_vectors**0.5)
    return f"IVF{nlist},Flat"


__all__ = ["ExactIndex", "FaissIndex", "VectorIndex", "auto_factory", "create_index", "gpu_available"]
