"""FAISS settings this engine relies on."""

from __future__ import annotations

# faiss 1.15 computes inner products for fewer than 128,000 queries with its own SIMD loop; a
# BLAS matrix product is ~13x faster for a batch of 200 queries over 1M vectors on 2 cores
# (benchmarks/scale.py). FAISS's own historical default of 20 queries is restored.
BLAS_FROM_QUERIES = 20
QUANTIZER_EF_SEARCH = 128  # an HNSW coarse quantiser's default efSearch (16) caps IVF recall
_tuned = False


def tune_faiss() -> None:
    """FAISS's process-wide settings this engine relies on (set once, on first use)."""
    global _tuned
    if not _tuned:
        import faiss

        faiss.cvar.distance_compute_blas_threshold = BLAS_FROM_QUERIES
        _tuned = True


def gpu_available() -> bool:
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    return bool(get and hasattr(faiss, "StandardGpuResources") and get() > 0)
