"""The index files of one data directory: `index/<modality>.faiss` plus `index_info.json`, which
records what built each file and how to verify it.

The store is the source of truth; these files are derived from it. `load_verified` checks a file
against its recorded checksum and the store's ids and repairs or rebuilds it (with a note in
`repairs`), never serving an empty or stale index. Writes are atomic (temp file, fsync, rename).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders.base import EmbeddingSpace
from retrieval.fsutil import atomic_write_bytes, atomic_write_json, sha256_bytes
from retrieval.index import FaissIndex, VectorIndex, auto_factory, create_index
from retrieval.store import Store
from retrieval.write_lock import WriteLock

log = logging.getLogger(__name__)

INFO_FILE = "index_info.json"
DEFAULT_FACTORY = "Flat"
TRAIN_SAMPLE = 100_000  # vectors a trained index type (IVF, PQ) learns from


class IndexFiles:
    def __init__(self, data_dir: Path, store: Store, lock: WriteLock) -> None:
        self.data_dir = data_dir
        self.store = store
        self.lock = lock
        self.repairs: list[str] = []  # what verification fixed since open, for `info` and logs
        self.degraded: str | None = None  # why a repair could not be saved (e.g. disk full)
        self.saved_mtime: float | None = None  # the info file's mtime after our own last save

    @property
    def info_path(self) -> Path:
        return self.data_dir / INFO_FILE

    def path(self, modality: str) -> Path:
        return self.data_dir / "index" / f"{modality}.faiss"

    def read_info(self) -> dict[str, Any]:
        try:
            return json.loads(self.info_path.read_text())
        except FileNotFoundError:
            return {"indexes": {}, "generation": 0}
        except ValueError:
            self.repairs.append(f"{INFO_FILE} was unreadable; indexes are verified from the store")
            log.warning("%s is unreadable; rebuilding the indexes from the store.", self.info_path)
            return {"indexes": {}, "generation": 0}

    # -- index types -----------------------------------------------------------------------------
    def default_factory(self) -> str:
        """The pinned factory string (`crossmedia index --index-factory`), else exact search."""
        return self.store.get_meta("index_factory") or DEFAULT_FACTORY

    def factory_for(self, modality: str) -> str:
        return self.read_info()["indexes"].get(modality, {}).get("factory", self.default_factory())

    def wanted_factory(self, modality: str) -> str:
        """The index type `modality` should have now: the pinned factory string, else the
        automatic choice for its size (`retrieval.index.auto_factory`)."""
        pinned = self.store.get_meta("index_factory")
        return pinned or auto_factory(self.store.counts().get(modality, 0))

    def load_verified(
        self, modality: str, space: EmbeddingSpace, default_factory: str
    ) -> VectorIndex:
        """The index file of `modality`, checked against its record and the store; repaired or
        rebuilt when it fails (a note lands in `repairs`)."""
        meta = self.read_info()["indexes"].get(modality)
        path = self.path(modality)
        factory = meta["factory"] if meta else default_factory
        index: VectorIndex | None = None
        if meta and path.exists():
            data = path.read_bytes()
            if sha256_bytes(data) != meta.get("sha256"):
                self._repair_note(modality, "checksum mismatch (corrupt or interrupted write)")
            else:
                try:
                    index = FaissIndex.from_bytes(data, space.dim, factory)
                except (RuntimeError, ValueError) as exc:
                    self._repair_note(modality, f"unreadable ({exc})")
        elif path.exists() or meta:
            self._repair_note(modality, "index file or its record is missing")
        if index is None:
            return self.rebuild(modality, factory, space, persist=self.save_if_possible)
        return self._reconcile(modality, index, space)

    def _repair_note(self, modality: str, why: str) -> None:
        msg = f"{modality} index: {why}; rebuilt from the vectors in the store"
        self.repairs.append(msg)
        log.warning(msg)

    def _reconcile(self, modality: str, index: VectorIndex, space: EmbeddingSpace) -> VectorIndex:
        """Make the index hold exactly the store's ids (after a crash between commit and save)."""
        want = self.store.ids(modality)
        have = index.ids()
        if np.array_equal(want, have):
            return index
        if len(np.unique(have)) != len(have):
            self._repair_note(modality, "duplicate ids")
            return self.rebuild(modality, index.factory, space, persist=self.save_if_possible)
        missing = np.setdiff1d(want, have)
        extra = np.setdiff1d(have, want)
        try:
            if len(extra):
                index.remove(extra)
            if len(missing):
                vecs = self.store.vectors_for(missing.tolist(), index.dim)
                index.add(missing, np.stack([vecs[int(i)] for i in missing]))
        except NotImplementedError:
            self._repair_note(
                modality,
                f"out of step with the store (+{len(missing)} / "
                f"-{len(extra)} ids) and cannot remove ids in place",
            )
            return self.rebuild(modality, index.factory, space, persist=self.save_if_possible)
        msg = f"{modality} index: caught up with the store (+{len(missing)} / -{len(extra)} ids)"
        self.repairs.append(msg)
        log.warning(msg)
        self.save_if_possible(modality, index, space)
        return index

    def rebuild(
        self,
        modality: str,
        factory: str,
        space: EmbeddingSpace,
        persist: Callable[[str, VectorIndex, EmbeddingSpace], None] | None = None,
    ) -> VectorIndex:
        """A new index of `factory` over every stored vector of `modality`, saved (by `persist`,
        default `save`: the caller holds the write lock)."""
        index = create_index(factory, space.dim)
        if index.needs_training:
            sample = [v for _, v in self.store.iter_vectors(modality, space.dim)]
            data = np.concatenate(sample) if sample else np.zeros((0, space.dim), np.float32)
            if len(data) < 1:
                index = create_index(DEFAULT_FACTORY, space.dim)
            else:
                rng = np.random.default_rng(0)
                pick = rng.choice(len(data), size=min(len(data), TRAIN_SAMPLE), replace=False)
                index.train(data[np.sort(pick)])
        for ids, vecs in self.store.iter_vectors(modality, space.dim):
            index.add(ids, vecs)
        (persist or self.save)(modality, index, space)
        return index

    def save_if_possible(self, modality: str, index: VectorIndex, space: EmbeddingSpace) -> None:
        """Save a repair made while reading, if the write lock is free now and the disk takes
        it; otherwise the repair stays in memory (the next writer saves it)."""
        if not self.lock.try_acquire():
            log.info("%s index repaired in memory; the writer holding the lock saves it", modality)
            return
        try:
            self.save(modality, index, space)
        except OSError as exc:
            self.degraded = (
                f"index repairs kept in memory: cannot save them ({exc.strerror or exc})"
            )
            self.repairs.append(f"{modality} index: {self.degraded}")
            log.warning("%s index: %s", modality, self.degraded)
        finally:
            self.lock.release()

    def save(self, modality: str, index: VectorIndex, space: EmbeddingSpace | None) -> None:
        """Write the index file atomically, then its record; a crash between them only costs a
        rebuild on the next load. The caller holds the write lock."""
        assert isinstance(index, FaissIndex), "only FAISS indexes are persisted"
        assert self.lock.held, "index files are written under the data directory's write lock"
        data = index.to_bytes()
        atomic_write_bytes(self.path(modality), data)
        info = self.read_info()
        info["indexes"][modality] = {
            "factory": index.factory,
            "count": index.count(),
            "sha256": sha256_bytes(data),
            "bytes": len(data),
            "saved_at": time.time(),
        }
        info["generation"] = int(info.get("generation", 0)) + 1
        info["space"] = None if space is None else space.as_dict()
        atomic_write_json(self.info_path, info)
        self.saved_mtime = self.info_path.stat().st_mtime

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per modality with a saved index: its factory string, vector count and file size."""
        return {
            m: {k: meta[k] for k in ("factory", "count", "bytes")}
            for m, meta in self.read_info()["indexes"].items()
        }
