"""The index files of one data directory: per modality a base file `index/<modality>.faiss` and
an append-only delta `index/<modality>.delta` (`retrieval.index_delta`), plus `index_info.json`,
which records what built each base, its checksums, and the delta's committed length.

A write appends its changes to the delta (cost in proportion to the write, not the catalogue);
the base is rewritten only when the delta grows past a fraction of it (a merge) or the index type
changes. Opening checks a base cheaply (size, and a checksum of its ends for large files; the
whole file below `FULL_HASH_BELOW`), each delta record by its CRC, and the ids against a summary
of the store's (count, sum, min, max); `crossmedia verify` hashes everything. The store is the
source of truth: a file that fails is repaired or rebuilt from it (with a note in `repairs`),
never served empty or stale.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from retrieval import index_delta
from retrieval.encoders.base import EmbeddingSpace
from retrieval.fsutil import atomic_write_json, atomic_write_via, quick_sha256_file, sha256_file
from retrieval.index import FaissIndex, VectorIndex, auto_factory
from retrieval.index_build import DEFAULT_FACTORY, build_index
from retrieval.index_delta import DeltaCorrupt, DeltaOp
from retrieval.index_reconcile import Reconciler
from retrieval.store import Store
from retrieval.write_lock import WriteLock

log = logging.getLogger(__name__)

INFO_FILE = "index_info.json"
FULL_HASH_BELOW = 64 << 20  # bytes: smaller base files are hashed whole on every open
MERGE_MIN_OPS = 20_000  # delta rows before a merge is considered ...
MERGE_FRACTION = 0.1  # ... and the share of the base they must reach


class IndexFiles(Reconciler):
    def __init__(self, data_dir: Path, store: Store, lock: WriteLock) -> None:
        self.data_dir = data_dir
        self.store = store
        self.lock = lock
        self.repairs: list[str] = []  # what verification fixed since open, for `info` and logs
        self.degraded: str | None = None  # why a repair could not be saved (e.g. disk full)
        self.saved_mtime: float | None = None  # the info file's mtime after our own last save
        self.loaded: dict[str, tuple[str, int]] = {}  # modality -> (base sha, delta bytes read)

    @property
    def info_path(self) -> Path:
        return self.data_dir / INFO_FILE

    def path(self, modality: str) -> Path:
        return self.data_dir / "index" / f"{modality}.faiss"

    def delta_path(self, modality: str) -> Path:
        return self.data_dir / "index" / f"{modality}.delta"

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

    def wanted_factory(self, modality: str, count: int | None = None) -> str:
        """The index type `modality` should have now: the pinned factory string, else the
        automatic choice for its size (`retrieval.index.auto_factory`)."""
        pinned = self.store.get_meta("index_factory")
        if pinned:
            return pinned
        n = self.store.counts().get(modality, 0) if count is None else count
        return auto_factory(n, self.space_dim())

    def space_dim(self) -> int:
        raw = self.store.get_meta("space")
        return EmbeddingSpace.from_json(raw).dim if raw else 256

    # -- loading ---------------------------------------------------------------------------------
    def load_verified(
        self, modality: str, space: EmbeddingSpace, default_factory: str
    ) -> VectorIndex:
        """The index of `modality` (base + delta), checked against its record and the store;
        repaired or rebuilt when it fails (a note lands in `repairs`)."""
        meta = self.read_info()["indexes"].get(modality)
        factory = meta["factory"] if meta else default_factory
        index: FaissIndex | None = None
        if meta and self.path(modality).exists():
            try:
                index = self.load_from_disk(modality, space.dim, meta)
            except DeltaCorrupt as exc:
                self._repair_note(modality, f"delta unreadable ({exc})")
            except ValueError as exc:
                self._repair_note(modality, str(exc))
        elif self.path(modality).exists() or meta:
            self._repair_note(modality, "index file or its record is missing")
        if index is None:
            return self.rebuild(modality, factory, space, persist=self.save_if_possible)
        return self.reconcile(modality, index, space)

    def load_from_disk(
        self, modality: str, dim: int, meta: dict[str, Any] | None = None
    ) -> FaissIndex:
        """Base file + committed delta, exactly as saved (no comparison with the store).
        ValueError names what failed."""
        meta = meta or self.read_info()["indexes"][modality]
        path = self.path(modality)
        if path.stat().st_size != int(meta.get("bytes", -1)) or not self._hash_matches(path, meta):
            raise ValueError("checksum mismatch (corrupt or interrupted write)")
        try:
            # big files are mapped, not read: they are checked by their ends' hash only
            index = FaissIndex.load(path, dim, meta["factory"], mmap=self._big(path))
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"unreadable ({exc})") from exc
        end = int(meta.get("delta_bytes", 0))
        apply_ops(index, index_delta.read(self.delta_path(modality), 0, end) if end else [])
        self.loaded[modality] = (str(meta.get("sha256")), end)
        return index

    @staticmethod
    def _big(path: Path) -> bool:
        return path.stat().st_size >= FULL_HASH_BELOW

    @classmethod
    def _hash_matches(cls, path: Path, meta: dict[str, Any]) -> bool:
        if not cls._big(path) or "quick_sha256" not in meta:
            return sha256_file(path) == meta.get("sha256")
        return quick_sha256_file(path) == meta["quick_sha256"]

    def catch_up(self, modality: str, index: FaissIndex) -> bool:
        """Apply what another process appended to the delta since we read it; False when its
        base changed (the caller reloads)."""
        meta = self.read_info()["indexes"].get(modality)
        seen = self.loaded.get(modality)
        if meta is None or seen is None or str(meta.get("sha256")) != seen[0]:
            return False
        end = int(meta.get("delta_bytes", 0))
        if end < seen[1]:
            return False
        try:
            apply_ops(index, index_delta.read(self.delta_path(modality), seen[1], end))
        except (DeltaCorrupt, OSError):
            return False
        self.loaded[modality] = (seen[0], end)
        return True

    # -- writing ---------------------------------------------------------------------------------
    def rebuild(self, modality: str, factory: str, space: EmbeddingSpace, persist=None):  # noqa: ANN001, ANN201
        """A new index of `factory` over every stored vector of `modality`, saved (by `persist`,
        default `save`: the caller holds the write lock)."""
        index, tuning = build_index(self.store, modality, factory, space.dim)
        (persist or self.save)(modality, index, space, tuning)
        return index

    def save_if_possible(
        self,
        modality: str,
        index: VectorIndex,
        space: EmbeddingSpace,
        tuning: dict[str, Any] | None = None,
        ops: list[DeltaOp] | None = None,
    ) -> None:
        """Save a repair made while reading, if the write lock is free now and the disk takes
        it; otherwise the repair stays in memory (the next writer saves it)."""
        if not self.lock.try_acquire():
            log.info("%s index repaired in memory; the writer holding the lock saves it", modality)
            return
        try:
            if ops is not None and isinstance(index, FaissIndex):
                self.append(modality, ops, index, space)
            else:
                self.save(modality, index, space, tuning)
        except OSError as exc:
            self.degraded = (
                f"index repairs kept in memory: cannot save them ({exc.strerror or exc})"
            )
            self.repairs.append(f"{modality} index: {self.degraded}")
            log.warning("%s index: %s", modality, self.degraded)
        finally:
            self.lock.release()

    def save(
        self,
        modality: str,
        index: VectorIndex,
        space: EmbeddingSpace | None,
        tuning: dict[str, Any] | None = None,
    ) -> None:
        """Write a new base atomically, then its record (with an empty delta); a crash between
        them only costs a rebuild on the next load. The caller holds the write lock."""
        assert isinstance(index, FaissIndex), "only FAISS indexes are persisted"
        assert self.lock.held, "index files are written under the data directory's write lock"
        path = self.path(modality)
        atomic_write_via(path, index.save)
        info = self.read_info()
        old = info["indexes"].get(modality, {})
        sha = sha256_file(path)
        info["indexes"][modality] = {
            "factory": index.factory,
            "count": index.count(),
            "base_count": index.count(),
            "sha256": sha,
            "quick_sha256": quick_sha256_file(path),
            "bytes": path.stat().st_size,
            "delta_bytes": 0,
            "delta_rows": 0,
            "search": tuning if tuning is not None else old.get("search"),
            "saved_at": time.time(),
        }
        self._commit_info(info, space)
        self.loaded[modality] = (sha, 0)

    def append(
        self, modality: str, ops: list[DeltaOp], index: FaissIndex, space: EmbeddingSpace | None
    ) -> None:
        """Record `ops` (already applied to `index`) in the delta; merge into a new base when
        the delta has grown past `MERGE_FRACTION` of it. The caller holds the write lock."""
        assert self.lock.held, "index files are written under the data directory's write lock"
        info = self.read_info()
        meta = info["indexes"].get(modality)
        if meta is None or not self.path(modality).exists():
            self.save(modality, index, space)
            return
        rows = int(meta.get("delta_rows", 0)) + sum(len(op.ids) for op in ops)
        if rows >= max(MERGE_MIN_OPS, MERGE_FRACTION * int(meta.get("base_count", 0))):
            self.save(modality, index, space)
            return
        end = index_delta.append(self.delta_path(modality), int(meta.get("delta_bytes", 0)), ops)
        meta.update(delta_bytes=end, delta_rows=rows, count=index.count(), saved_at=time.time())
        self._commit_info(info, space)
        self.loaded[modality] = (str(meta.get("sha256")), end)

    def _commit_info(self, info: dict[str, Any], space: EmbeddingSpace | None) -> None:
        info["generation"] = int(info.get("generation", 0)) + 1
        info["space"] = None if space is None else space.as_dict()
        atomic_write_json(self.info_path, info)
        self.saved_mtime = self.info_path.stat().st_mtime

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per modality with a saved index: its type, size, delta and measured search recall."""
        keys = ("factory", "count", "bytes", "delta_bytes", "search")
        return {
            m: {k: meta.get(k) for k in keys} for m, meta in self.read_info()["indexes"].items()
        }


def apply_ops(index: VectorIndex, ops: list[DeltaOp]) -> None:
    for op in ops:
        if op.kind == index_delta.ADD:
            assert op.vectors is not None
            index.add(op.ids, op.vectors)
        else:
            index.remove(op.ids)
