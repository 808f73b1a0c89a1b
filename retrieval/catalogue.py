"""A catalogue: one data directory holding the SQL store, one vector index per modality and
`index_info.json`, which records what built the indexes and how to verify them.

The store is the source of truth. Index files are derived: on load each is checked against its
recorded checksum and against the store's ids for that modality; an index that fails is repaired
or rebuilt from the stored vectors (with a warning), never served empty or stale.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from retrieval.catalogue_space import SpaceBinding
from retrieval.errors import CatalogueError
from retrieval.index import FaissIndex, VectorIndex, create_index
from retrieval.index_delta import DeltaOp
from retrieval.index_files import IndexFiles
from retrieval.index_reconcile import catch_up
from retrieval.media_access import add_media_roots, media_file, media_roots
from retrieval.modality import ALL_MODALITIES, by_modality
from retrieval.store import ItemRecord, NewItem, Store, WriteResult
from retrieval.write_lock import WriteLock

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    return Path(os.environ.get("CROSSMEDIA_DATA_DIR") or "./crossmedia-data")


class Catalogue(SpaceBinding):
    def __init__(self, data_dir: Path, store: Store) -> None:
        self.data_dir = data_dir
        self.store = store
        self._indexes: dict[str, VectorIndex] = {}
        self._info_mtime: float | None = None
        self.lock = WriteLock(data_dir)
        self.write_timeout = 30.0  # seconds a write waits for another process's write lock
        self._dirty: set[str] = set()  # modalities whose in-memory index is ahead of its file
        self._pending: dict[str, list[DeltaOp]] = {}  # those changes, as delta records
        self.files = IndexFiles(data_dir, store, self.lock)
        self.repairs = self.files.repairs  # what verification fixed since open, for `info` and logs

    # -- open / close ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, data_dir: Path | str, *, db_url: str | None = None, create: bool = True
    ) -> Catalogue:
        data_dir = Path(data_dir).expanduser().resolve()
        if not data_dir.exists():
            if not create:
                raise CatalogueError(
                    f"No catalogue at {data_dir}. Create one with `crossmedia index SOURCE "
                    f"--data-dir {data_dir}`."
                )
            data_dir.mkdir(parents=True)
        (data_dir / "index").mkdir(exist_ok=True)
        url = (
            db_url
            or os.environ.get("CROSSMEDIA_DB_URL")
            or f"sqlite:///{data_dir / 'catalogue.db'}"
        )
        return cls(data_dir, Store(url))

    def close(self) -> None:
        self.unlock()
        self.store.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock_for_writing(self, timeout: float = 0.0) -> None:
        """Hold the write lock until `unlock` (a whole `crossmedia index` run); waits up to
        `timeout` s (a server holds it only for the moment of a commit), then a clear error."""
        self.lock.acquire(timeout)

    def unlock(self) -> None:
        self.lock.release_all()

    # -- indexes -----------------------------------------------------------------------------------
    def index(self, modality: str) -> VectorIndex:
        """The verified index of one modality (loaded once; reloaded if another process saved)."""
        self._refresh_if_changed()
        if modality not in self._indexes:
            self._indexes[modality] = self._load_verified(modality)
        return self._indexes[modality]

    def _refresh_if_changed(self) -> None:
        """Follow another process's saves (our own do not count): apply what it appended to a
        delta, reload an index whose base it replaced."""
        try:
            mtime = self.files.info_path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime not in (self._info_mtime, self.files.saved_mtime):
            for modality, index in list(self._indexes.items()):
                if modality in self._dirty or not (
                    isinstance(index, FaissIndex) and self.files.catch_up(modality, index)
                ):
                    del self._indexes[modality]
        self._info_mtime = mtime

    def _load_verified(self, modality: str) -> VectorIndex:
        space, factory = self.space, self.files.default_factory()
        return (
            self.files.load_verified(modality, space, factory)
            if space
            else create_index(factory, 1)
        )

    def rebuild(self, modality: str, factory: str | None = None) -> VectorIndex:
        space = self.space
        assert space is not None, "rebuild needs a bound embedding space"
        with self.lock.holding(self.write_timeout):
            index = self.files.rebuild(modality, factory or self.files.default_factory(), space)
        self._pending.pop(modality, None)
        self._after_save(modality)
        self._indexes[modality] = index
        return index

    def save_index(self, modality: str, index: VectorIndex, tuning: dict | None = None) -> None:
        """Write `index` as the new base of `modality` (its delta starts empty) and serve it
        from now on. An index built from an earlier snapshot of the store first catches up with
        what was written since."""
        with self.lock.holding(self.write_timeout):
            catch_up(self.store, modality, index)
            self.files.save(modality, index, self.space, tuning)
            self._indexes[modality] = index
        self._pending.pop(modality, None)
        self._after_save(modality)

    def _after_save(self, modality: str) -> None:
        self._info_mtime = self.files.saved_mtime
        self._dirty.discard(modality)

    # -- writes --------------------------------------------------------------------------------------
    def write(
        self,
        items: list[NewItem],
        links: list[tuple[str, str, str]] | None = None,
        errors: list[tuple[str, str | None, str]] | None = None,
        save: bool = True,
    ) -> WriteResult:
        """Commit a batch to the store, then mirror it into the in-memory indexes; under the
        write lock (waiting up to `write_timeout` for another writer)."""
        with self.lock.holding(self.write_timeout):
            return self._write(items, links, errors, save)

    def _write(
        self,
        items: list[NewItem],
        links: list[tuple[str, str, str]] | None,
        errors: list[tuple[str, str | None, str]] | None,
        save: bool,
    ) -> WriteResult:
        # Load (and verify) the indexes before the commit: loading after it would already see
        # the new rows in the store and then add them a second time.
        for modality in {it.modality for it in items}:
            self.index(modality)
        result = self.store.write_batch(items, links or [], errors or [])
        touched: set[str] = set()
        rebuilt: set[str] = set()  # these already hold the just-committed rows (from the store)
        for modality, old_ids in by_modality(result.removed.items()).items():
            if self._remove_from_index(modality, old_ids):
                rebuilt.add(modality)
            else:
                touched.add(modality)
        by_mod: dict[str, list[tuple[int, np.ndarray]]] = {}
        for it in items:
            new_id = result.added.get(it.key)
            if new_id is not None:
                by_mod.setdefault(it.modality, []).append((new_id, it.vector))
        for modality, rows in by_mod.items():
            if modality in rebuilt:
                continue
            index = self.index(modality)
            if index.dim != len(rows[0][1]) or not isinstance(index, FaissIndex):
                index = self.rebuild(modality, self.files.factory_for(modality))
                continue  # the rebuild read the just-committed rows from the store
            new_ids, vectors = np.array([r[0] for r in rows]), np.stack([r[1] for r in rows])
            index.add(new_ids, vectors)
            self._pending.setdefault(modality, []).append(DeltaOp.add(new_ids, vectors))
            touched.add(modality)
        self._dirty |= touched
        if save:
            self.flush()
        return result

    def flush(self) -> None:
        """Save what changed in each index since its last save: as delta records where they
        are known, else as a new base."""
        with self.lock.holding(self.write_timeout):
            for modality in sorted(self._dirty):
                index = self._indexes.get(modality)
                ops = self._pending.pop(modality, None)
                if isinstance(index, FaissIndex) and ops:
                    self.files.append(modality, ops, index, self.space)
                    self._after_save(modality)
                elif index is not None:
                    self.save_index(modality, index)
            self._dirty.clear()

    def follow_store(self, modality: str) -> None:
        """Bring the loaded index up to the store after rows were written around it (a bulk
        import), saving the difference as delta records."""
        with self.lock.holding(self.write_timeout):
            index = self.index(modality)
            try:
                ops = catch_up(self.store, modality, index)
            except NotImplementedError:
                self.rebuild(modality, index.factory)
                return
            self._pending.setdefault(modality, []).extend(ops)
            self._dirty.add(modality)
            self.flush()

    def _remove_from_index(self, modality: str, ids: list[int]) -> bool:
        """True when the index had to be rebuilt from the store instead."""
        index = self.index(modality)
        doomed = np.asarray(ids, dtype=np.int64)
        try:
            index.remove(doomed)
        except NotImplementedError:
            self.rebuild(modality, index.factory)
            return True
        self._pending.setdefault(modality, []).append(DeltaOp.remove(doomed))
        return False

    def delete_item(self, item_id: int) -> bool:
        """Delete one item; deleting a media item also deletes captions that describe only it."""
        item = self.store.get_item(item_id)
        if item is None:
            return False
        doomed = [item.id]
        if item.modality != "text":
            for cap in self.store.get_items(item.linked).values():
                if cap.modality == "text" and cap.linked == [item.id]:
                    doomed.append(cap.id)
        self.delete_ids(doomed)
        return True

    def delete_ids(self, ids: list[int], save: bool = True) -> dict[int, str]:
        """Delete items by id from the store, then from the indexes; returns id -> modality."""
        with self.lock.holding(self.write_timeout):
            deleted = self.store.delete_items(ids)
            for modality, doomed in by_modality(deleted.items()).items():
                self._remove_from_index(modality, doomed)
                self._dirty.add(modality)
            if save:
                self.flush()
        return deleted

    # -- reads ---------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def get_item(self, item_id: int) -> ItemRecord | None:
        return self.store.get_item(item_id)

    def media_path(self, item: ItemRecord, extra_roots: Iterable[Path] = ()) -> Path | None:
        """The item's file, if it exists and lies inside the data directory, a root ingestion
        read from, or one of `extra_roots` (settings); None otherwise."""
        return media_file(item, [self.data_dir, *media_roots(self.store), *extra_roots])

    def add_media_roots(self, roots: Iterable[Path]) -> None:
        add_media_roots(self.store, roots)

    def verify_indexes(self) -> list[str]:
        """Load (verify, repair) every modality's index against the store; the repairs made.
        Every writer runs this first, so a finished command leaves consistent files."""
        if self.space is not None:
            for modality in map(str, ALL_MODALITIES):
                self.index(modality)
        return list(self.repairs)

    @property
    def degraded(self) -> str | None:
        """Why the files lag the store in a way only a writer can fix (e.g. a full disk)."""
        return self.files.degraded
