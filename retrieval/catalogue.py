"""A catalogue: one data directory holding the SQL store, one vector index per modality and
`index_info.json`, which records what built the indexes and how to verify them.

The store is the source of truth. Index files are derived: on load each is checked against its
recorded checksum and against the store's ids for that modality; an index that fails is repaired
or rebuilt from the stored vectors (with a warning), never served empty or stale.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders.base import EmbeddingSpace
from retrieval.errors import CatalogueError, SpaceMismatchError
from retrieval.fsutil import atomic_write_bytes, atomic_write_json, remove_stale_temps, sha256_bytes
from retrieval.index import FaissIndex, VectorIndex, create_index
from retrieval.modality import ALL_MODALITIES
from retrieval.store import ItemRecord, NewItem, Store, WriteResult

log = logging.getLogger(__name__)

INFO_FILE = "index_info.json"
DEFAULT_FACTORY = "Flat"


def default_data_dir() -> Path:
    return Path(os.environ.get("CROSSMEDIA_DATA_DIR") or "./crossmedia-data")


class Catalogue:
    def __init__(self, data_dir: Path, store: Store) -> None:
        self.data_dir = data_dir
        self.store = store
        self._indexes: dict[str, VectorIndex] = {}
        self._info_mtime: float | None = None
        self._lock_fd: int | None = None
        self._dirty: set[str] = set()  # modalities whose in-memory index is ahead of its file
        self.repairs: list[str] = []  # what verification fixed since open, for `info` and logs

    # -- open / close ------------------------------------------------------------------------------
    @classmethod
    def open(cls, data_dir: Path | str, *, db_url: str | None = None, create: bool = True) -> Catalogue:
        data_dir = Path(data_dir).expanduser().resolve()
        if not data_dir.exists():
            if not create:
                raise CatalogueError(
                    f"No catalogue at {data_dir}. Create one with `crossmedia index SOURCE "
                    f"--data-dir {data_dir}`."
                )
            data_dir.mkdir(parents=True)
        (data_dir / "index").mkdir(exist_ok=True)
        remove_stale_temps(data_dir / "index")
        remove_stale_temps(data_dir)
        url = db_url or os.environ.get("CROSSMEDIA_DB_URL") or f"sqlite:///{data_dir / 'catalogue.db'}"
        return cls(data_dir, Store(url))

    def close(self) -> None:
        self.unlock()
        self.store.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock_for_writing(self) -> None:
        """One writer per data directory; a second `crossmedia index` gets a clear error."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.data_dir / ".write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise CatalogueError(
                f"Another process is writing to {self.data_dir}. Wait for it to finish (or stop "
                "it); the catalogue stays consistent either way."
            ) from exc
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- embedding space ----------------------------------------------------------------------------
    @property
    def space(self) -> EmbeddingSpace | None:
        raw = self.store.get_meta("space")
        return EmbeddingSpace.from_json(raw) if raw else None

    def bind_space(self, space: EmbeddingSpace) -> None:
        """Record the space on first write; refuse any other space afterwards."""
        current = self.space
        if current is None:
            self.store.set_meta("space", space.to_json())
        else:
            self.check_space(space)

    def check_space(self, space: EmbeddingSpace) -> None:
        current = self.space
        if current is not None and current != space:
            raise SpaceMismatchError(
                f"The catalogue at {self.data_dir} was built with model {current.model!r} "
                f"(heads {current.head_version or 'none'}, dim {current.dim}); this request uses "
                f"{space.model!r} (heads {space.head_version or 'none'}, dim {space.dim}). Vectors "
                f"of different models cannot be compared. Use --model {current.model}, or index "
                "into a new --data-dir to switch models (re-embedding everything)."
            )

    # -- info file ---------------------------------------------------------------------------------
    @property
    def info_path(self) -> Path:
        return self.data_dir / INFO_FILE

    def read_info(self) -> dict[str, Any]:
        import json

        try:
            return json.loads(self.info_path.read_text())
        except FileNotFoundError:
            return {"indexes": {}, "generation": 0}
        except ValueError:
            self.repairs.append(f"{INFO_FILE} was unreadable; indexes are verified from the store")
            log.warning("%s is unreadable; rebuilding the indexes from the store.", self.info_path)
            return {"indexes": {}, "generation": 0}

    def factory_for(self, modality: str) -> str:
        return self.read_info()["indexes"].get(modality, {}).get("factory", self._default_factory())

    def _default_factory(self) -> str:
        return self.store.get_meta("index_factory") or DEFAULT_FACTORY

    def set_default_factory(self, factory: str) -> None:
        # Validate before storing: a bad string kept in the store would break every later open.
        try:
            create_index(factory, self.space.dim if self.space else 8)
        except ValueError as exc:
            raise CatalogueError(str(exc)) from exc
        self.store.set_meta("index_factory", factory)

    # -- indexes -----------------------------------------------------------------------------------
    def index(self, modality: str) -> VectorIndex:
        """The verified index of one modality (loaded once; reloaded if another process saved)."""
        self._refresh_if_changed()
        if modality not in self._indexes:
            self._indexes[modality] = self._load_verified(modality)
        return self._indexes[modality]

    def _refresh_if_changed(self) -> None:
        try:
            mtime = self.info_path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._info_mtime:
            self._indexes.clear()
            self._info_mtime = mtime

    def _load_verified(self, modality: str) -> VectorIndex:
        space = self.space
        if space is None:
            return create_index(self._default_factory(), 1)
        meta = self.read_info()["indexes"].get(modality)
        path = self.data_dir / "index" / f"{modality}.faiss"
        factory = meta["factory"] if meta else self._default_factory()
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
            return self.rebuild(modality, factory)
        return self._reconcile(modality, index)

    def _repair_note(self, modality: str, why: str) -> None:
        msg = f"{modality} index: {why}; rebuilt from the vectors in the store"
        self.repairs.append(msg)
        log.warning(msg)

    def _reconcile(self, modality: str, index: VectorIndex) -> VectorIndex:
        """Make the index hold exactly the store's ids (after a crash between commit and save)."""
        want = self.store.ids(modality)
        have = index.ids()
        if np.array_equal(want, have):
            return index
        if len(np.unique(have)) != len(have):
            self._repair_note(modality, "duplicate ids")
            return self.rebuild(modality, index.factory)
        missing = np.setdiff1d(want, have)
        extra = np.setdiff1d(have, want)
        try:
            if len(extra):
                index.remove(extra)
            if len(missing):
                vecs = self.store.vectors_for(missing.tolist(), index.dim)
                index.add(missing, np.stack([vecs[int(i)] for i in missing]))
        except NotImplementedError:
            self._repair_note(modality, f"out of step with the store (+{len(missing)} / "
                                        f"-{len(extra)} ids) and cannot remove ids in place")
            return self.rebuild(modality, index.factory)
        msg = f"{modality} index: caught up with the store (+{len(missing)} / -{len(extra)} ids)"
        self.repairs.append(msg)
        log.warning(msg)
        self.save_index(modality, index)
        return index

    def rebuild(self, modality: str, factory: str | None = None) -> VectorIndex:
        space = self.space
        assert space is not None, "rebuild needs a bound embedding space"
        factory = factory or self._default_factory()
        index = create_index(factory, space.dim)
        if index.needs_training:
            sample = [v for _, v in self.store.iter_vectors(modality, space.dim)]
            data = np.concatenate(sample) if sample else np.zeros((0, space.dim), np.float32)
            if len(data) < 1:
                index = create_index(DEFAULT_FACTORY, space.dim)
            else:
                rng = np.random.default_rng(0)
                pick = rng.choice(len(data), size=min(len(data), 100_000), replace=False)
                index.train(data[np.sort(pick)])
        for ids, vecs in self.store.iter_vectors(modality, space.dim):
            index.add(ids, vecs)
        self.save_index(modality, index)
        self._indexes[modality] = index
        return index

    def upgrade_fallback_indexes(self) -> list[str]:
        """Rebuild indexes still on the exact fallback into the catalogue's chosen factory.

        A trained type (IVF, PQ) cannot be built while there is nothing to train on, so a new
        catalogue's first index is Flat; once vectors exist, this gives it the type asked for.
        Returns the modalities rebuilt.
        """
        want = self._default_factory()
        if want == DEFAULT_FACTORY or self.space is None:
            return []
        done = []
        for modality in map(str, ALL_MODALITIES):
            index = self.index(modality)
            if index.factory != DEFAULT_FACTORY or index.count() == 0:
                continue
            try:
                self.rebuild(modality, want)
            except RuntimeError as exc:  # e.g. fewer vectors than IVF lists: stay exact for now
                log.info("%s index stays %s for now: %s", modality, DEFAULT_FACTORY, exc)
                continue
            done.append(modality)
        return done

    def save_index(self, modality: str, index: VectorIndex) -> None:
        """Write the index file atomically, then its record; a crash between them only costs a
        rebuild on the next load."""
        assert isinstance(index, FaissIndex), "only FAISS indexes are persisted"
        data = index.to_bytes()
        atomic_write_bytes(self.data_dir / "index" / f"{modality}.faiss", data)
        info = self.read_info()
        info["indexes"][modality] = {
            "factory": index.factory, "count": index.count(), "sha256": sha256_bytes(data),
            "bytes": len(data), "saved_at": time.time(),
        }
        info["generation"] = int(info.get("generation", 0)) + 1
        space = self.space
        info["space"] = None if space is None else {
            "model": space.model, "head_version": space.head_version, "dim": space.dim
        }
        atomic_write_json(self.info_path, info)
        self._info_mtime = self.info_path.stat().st_mtime
        self._dirty.discard(modality)

    # -- writes --------------------------------------------------------------------------------------
    def write(
        self,
        items: list[NewItem],
        links: list[tuple[str, str, str]] | None = None,
        errors: list[tuple[str, str | None, str]] | None = None,
        save: bool = True,
    ) -> WriteResult:
        """Commit a batch to the store, then mirror it into the in-memory indexes."""
        # Load (and verify) the indexes before the commit: loading after it would already see
        # the new rows in the store and then add them a second time.
        for modality in {it.modality for it in items}:
            self.index(modality)
        result = self.store.write_batch(items, links or [], errors or [])
        touched: set[str] = set()
        rebuilt: set[str] = set()  # these already hold the just-committed rows (read from the store)
        by_removed: dict[str, list[int]] = {}
        for old_id, modality in result.removed.items():
            by_removed.setdefault(modality, []).append(old_id)
        for modality, old_ids in by_removed.items():
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
                index = self.rebuild(modality, self.factory_for(modality))
                continue  # the rebuild read the just-committed rows from the store
            index.add(np.array([r[0] for r in rows]), np.stack([r[1] for r in rows]))
            touched.add(modality)
        self._dirty |= touched
        if save:
            self.flush()
        return result

    def flush(self) -> None:
        """Save every index that changed since its last save."""
        for modality in sorted(self._dirty):
            if modality in self._indexes:
                self.save_index(modality, self._indexes[modality])
        self._dirty.clear()

    def _remove_from_index(self, modality: str, ids: list[int]) -> bool:
        """True when the index had to be rebuilt from the store instead."""
        index = self.index(modality)
        try:
            index.remove(np.asarray(ids, dtype=np.int64))
        except NotImplementedError:
            self.rebuild(modality, index.factory)
            return True
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
        deleted = self.store.delete_items(ids)
        for modality in set(deleted.values()):
            self._remove_from_index(modality, [i for i, m in deleted.items() if m == modality])
            self._dirty.add(modality)
        if save:
            self.flush()
        return deleted

    # -- reads ---------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def get_item(self, item_id: int) -> ItemRecord | None:
        return self.store.get_item(item_id)

    def media_path(self, item: ItemRecord) -> Path | None:
        if item.path is None or item.modality == "text":
            return None
        p = Path(item.path)
        return p if p.is_file() else None

    def info(self) -> dict[str, Any]:
        space = self.space
        info = self.read_info()
        indexes = {}
        for modality in ALL_MODALITIES:
            meta = info["indexes"].get(str(modality))
            if meta:
                indexes[str(modality)] = {k: meta[k] for k in ("factory", "count", "bytes")}
        db_file = self.data_dir / "catalogue.db"
        return {
            "data_dir": str(self.data_dir),
            "db": self.store.engine.url.render_as_string(hide_password=True),
            "db_bytes": db_file.stat().st_size if db_file.exists() else None,
            "space": None if space is None else {
                "model": space.model, "head_version": space.head_version, "dim": space.dim
            },
            "counts": self.counts(),
            "indexes": indexes,
            "skipped_files": self.store.error_count(),
        }
