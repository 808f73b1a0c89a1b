"""FAISS implementation of the vector index, described by a factory string ("Flat", "IVF256,Flat",
"HNSW32", "IVF1024,PQ32"), inner-product metric, database ids kept in the index (IDMap2).

An IVF index keeps database ids in its own inverted lists (it removes them in place), which may
be memory-mapped (faiss_mmap.py); any other type is wrapped in an ID map. The GPU, when present,
searches a copy: results and saved files do not depend on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from retrieval.index.base import VectorIndex, check_batch
from retrieval.index.faiss_mmap import own_lists, read_index
from retrieval.index.faiss_settings import QUANTIZER_EF_SEARCH, gpu_available, tune_faiss


class FaissIndex(VectorIndex):
    def __init__(self, dim: int, factory: str = "Flat", use_gpu: bool | None = None) -> None:
        import faiss

        self.dim = dim
        self.factory = factory
        inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.try_extract_index_ivf(inner)
        quantizer: Any = None if ivf is None else faiss.downcast_index(ivf.quantizer)
        if hasattr(quantizer, "hnsw"):
            quantizer.hnsw.efSearch = QUANTIZER_EF_SEARCH
        own_ids = "IDMap" in factory or isinstance(faiss.downcast_index(inner), faiss.IndexIVF)
        # faiss' SWIG types do not declare the attributes of downcast indexes
        self._index: Any = inner if own_ids else faiss.IndexIDMap2(inner)
        self.use_gpu = gpu_available() if use_gpu is None else use_gpu
        self._gpu_index = None
        self._gpu_res = None
        self._mapped = False  # inverted lists mapped read-only from the file (faiss_mmap.py)
        self.nprobe: int | None = None
        self.ef_search: int | None = None

    # -- verbs ---------------------------------------------------------------------------------
    @property
    def needs_training(self) -> bool:
        return not self._index.is_trained

    def train(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self._index.is_trained:
            self._index.train(vectors)
            self._gpu_index = None

    def ivf_lists(self) -> int | None:
        import faiss

        ivf = faiss.try_extract_index_ivf(self._inner())
        return None if ivf is None else int(ivf.nlist)

    def set_training_iterations(self, niter: int) -> None:
        import faiss

        ivf = faiss.try_extract_index_ivf(self._inner())
        if ivf is not None:
            ivf.cp.niter = niter

    def is_exact(self) -> bool:
        """Full float32 vectors scanned exhaustively (Flat): its answers are exact."""
        import faiss

        return isinstance(self._inner(), faiss.IndexFlat)

    def knob_values(self) -> tuple[str | None, list[int]]:
        """The search-time knob of this index type and the values a tuner tries, in order."""
        lists = self.ivf_lists()
        if lists is not None:
            return "nprobe", [
                p
                for p in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
                if p <= lists
            ] or [lists]
        if hasattr(self._inner(), "hnsw"):
            return "ef_search", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024]
        return None, []

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = check_batch(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        if not self._index.is_trained:
            raise RuntimeError(
                f"FAISS index {self.factory!r} must be trained before adding; call train() with "
                "representative vectors (the catalogue does this on rebuild)."
            )
        self._own_lists()
        self._index.add_with_ids(vectors, ids)
        self._gpu_index = None

    def search(
        self, queries: np.ndarray, k: int, among: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.count() == 0 or k <= 0 or (among is not None and len(among) == 0):
            return (
                np.full((len(queries), max(k, 0)), -np.inf, dtype=np.float32),
                np.full((len(queries), max(k, 0)), -1, dtype=np.int64),
            )
        tune_faiss()
        self._apply_search_params()
        if among is not None:
            scores, ids = self._search_among(queries, k, np.ascontiguousarray(among, np.int64))
        else:
            scores, ids = self._searcher().search(queries, k)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids.astype(np.int64)

    def _search_among(
        self, queries: np.ndarray, k: int, among: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A pre-filtered search on the CPU index: FAISS skips every id not in `among` (the
        ID map translates the selector to the inner index's positions)."""
        import faiss

        fx: Any = faiss  # the bundled stubs lack the search-parameter classes' keywords
        sel = fx.IDSelectorBatch(among)
        inner = self._inner()
        ivf = fx.try_extract_index_ivf(inner)
        if ivf is not None:
            params: Any = fx.SearchParametersIVF(sel=sel, nprobe=ivf.nprobe)
        elif hasattr(inner, "hnsw"):
            params = fx.SearchParametersHNSW(sel=sel, efSearch=inner.hnsw.efSearch)
        else:
            params = fx.SearchParameters(sel=sel)
        searcher: Any = self._index
        return searcher.search(queries, k, params=params)

    def remove(self, ids: np.ndarray) -> int:
        import faiss

        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._own_lists()
        if self._ivf_owns_ids():
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
            self._gpu_index = None
            return removed
        # IndexIDMap2 maps inner labels to ids by position and compacts that map on removal,
        # which is only right for inner indexes that shift their rows down too (flat codes).
        # IVF keeps its labels, so removal there would return wrong ids: rebuild instead.
        if not isinstance(faiss.downcast_index(self._index.index), faiss.IndexFlatCodes):
            raise NotImplementedError(
                f"FAISS index {self.factory!r} cannot remove ids in place; rebuild it instead."
            )
        try:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
        except RuntimeError as exc:
            raise NotImplementedError(
                f"FAISS index {self.factory!r} cannot remove ids ({exc}); rebuild it instead."
            ) from exc
        self._gpu_index = None
        return removed

    def count(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        return np.sort(self.unsorted_ids())

    def unsorted_ids(self) -> np.ndarray:
        """The ids held, in storage order (no sort: cheap enough to check at every open)."""
        import faiss

        if self._ivf_owns_ids():
            ivf: Any = faiss.downcast_index(self._index)
            lists = ivf.invlists
            parts = [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(ivf.nlist)
                if lists.list_size(i)
            ]
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        idmap: Any = faiss.downcast_index(self._index)
        return faiss.vector_to_array(idmap.id_map).astype(np.int64)

    def _ivf_owns_ids(self) -> bool:
        import faiss

        return isinstance(faiss.downcast_index(self._index), faiss.IndexIVF)

    def _inner(self) -> Any:
        """The index behind the ID map (the IVF index itself when it keeps the ids)."""
        import faiss

        outer: Any = faiss.downcast_index(self._index)
        return outer if self._ivf_owns_ids() else faiss.downcast_index(outer.index)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `ids` (N, dim); exact for Flat storage, approximate for PQ/SQ."""
        import faiss

        if self._ivf_owns_ids():
            ivf: Any = faiss.downcast_index(self._index)
            fx: Any = faiss  # the bundled stubs lack DirectMap
            ivf.set_direct_map_type(fx.DirectMap.Hashtable)
            try:
                return np.stack([ivf.reconstruct(int(i)) for i in ids])
            finally:
                ivf.set_direct_map_type(fx.DirectMap.NoMap)
        idmap: Any = faiss.downcast_index(self._index)
        where = {int(e): i for i, e in enumerate(faiss.vector_to_array(idmap.id_map))}
        keys = np.array([where[int(i)] for i in ids], dtype=np.int64)
        return faiss.downcast_index(idmap.index).reconstruct_batch(keys)

    def to_bytes(self) -> bytes:
        import faiss

        self._own_lists()  # serialised lists, not a reference to the mapped file
        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(
        cls, data: bytes, dim: int, factory: str, use_gpu: bool | None = None
    ) -> FaissIndex:
        import faiss

        raw = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        return cls._wrap_loaded(raw, dim, factory, use_gpu)

    @classmethod
    def _wrap_loaded(
        cls, raw: Any, dim: int, factory: str, use_gpu: bool | None = None, mapped: bool = False
    ) -> FaissIndex:
        index = cls.__new__(cls)
        index.dim, index.factory = dim, factory
        index._index = raw
        if index._index.d != dim:
            raise ValueError(f"Index has dim {index._index.d}, expected {dim}.")
        index.use_gpu = gpu_available() if use_gpu is None else use_gpu
        index._gpu_index = index._gpu_res = None
        index._mapped = mapped
        index.nprobe = index.ef_search = None
        return index

    def save(self, path: Path | str) -> None:
        import faiss

        self._own_lists()  # a mapped index would be written as a reference to its old file
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(
        cls, path: Path | str, dim: int, factory: str = "Flat", mmap: bool = False
    ) -> FaissIndex:
        """Read an index file (streamed by FAISS: no second copy of it in memory); with `mmap`,
        an IVF index's lists are mapped, not read, until the first write (faiss_mmap.py)."""
        try:
            raw, mapped = read_index(path, mmap)
        except RuntimeError as exc:
            raise ValueError(f"not a FAISS index ({str(exc).splitlines()[0][:120]})") from exc
        return cls._wrap_loaded(raw, dim, factory, mapped=mapped)

    def _own_lists(self) -> None:
        if self._mapped:
            own_lists(self._index)
            self._mapped, self._gpu_index = False, None

    # -- search-time knobs and GPU ---------------------------------------------------------------
    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set the knobs on the index itself, so that they are saved with it (FAISS serialises
        nprobe and efSearch)."""
        self.nprobe, self.ef_search = nprobe, ef_search
        self._apply_search_params()
        self._gpu_index = None

    def _apply_search_params(self) -> None:
        import faiss

        inner = self._inner()
        if self.nprobe is not None:
            ivf = faiss.try_extract_index_ivf(inner)
            if ivf is not None:
                ivf.nprobe = self.nprobe
                quantizer: Any = faiss.downcast_index(ivf.quantizer)
                if hasattr(quantizer, "hnsw"):
                    quantizer.hnsw.efSearch = max(QUANTIZER_EF_SEARCH, 2 * self.nprobe)
        if self.ef_search is not None and hasattr(inner, "hnsw"):
            inner.hnsw.efSearch = self.ef_search

    def _searcher(self):  # noqa: ANN202 - a faiss index object
        if not self.use_gpu:
            return self._index
        if self._gpu_index is None:
            import faiss

            self._own_lists()
            self._gpu_res = self._gpu_res or faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_res, 0, self._index)
            if self.nprobe is not None:
                faiss.GpuParameterSpace().set_index_parameter(
                    self._gpu_index, "nprobe", self.nprobe
                )
        return self._gpu_index
