"""The metadata store: SQLAlchemy 2 over SQLite (WAL) by default, any SQLAlchemy URL otherwise.

Every batch of items is written in one transaction together with its vectors, token sets and
links, so a crash leaves either the whole batch or none of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from retrieval.errors import StorageFullError
from retrieval.fsutil import is_disk_full, low_on_space
from retrieval.store.connect import make_engine, read_only_sqlite_engine
from retrieval.store.models import Base, IngestError, Item, Link, Meta, Segment, TokenSet, Vector
from retrieval.store.records import ItemRecord, NewItem, WriteResult

SCHEMA_VERSION = "1"


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.read_only: str | None = None  # why the store could only be opened for reading
        try:
            self.engine = make_engine(url)
            Base.metadata.create_all(self.engine)
            self._session = sessionmaker(self.engine, expire_on_commit=False)
            with self._session.begin() as s:
                if s.get(Meta, "schema_version") is None:
                    s.add(Meta(key="schema_version", value=SCHEMA_VERSION))
        except OperationalError as exc:
            self._open_read_only(exc)

    def _open_read_only(self, exc: OperationalError) -> None:
        """A full disk stops SQLite from opening a WAL database normally (it must create its
        shared-memory file): open it immutable and read-only, so searches keep working."""
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not path or not Path(path).is_file() or not low_on_space(Path(path).parent):
            raise exc
        self.engine.dispose()
        self.read_only = f"the disk holding {path} is full: the catalogue is open for reading only"
        self.engine = read_only_sqlite_engine(Path(path))
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # -- meta ----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._session.begin() as s:
            s.merge(Meta(key=key, value=value))

    # -- writes --------------------------------------------------------------------------------
    def existing(self, keys: Sequence[str]) -> dict[str, str]:
        """key -> content hash, for the keys already stored."""
        out: dict[str, str] = {}
        with self._session() as s:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                for key, h in s.execute(select(Item.key, Item.content_hash).where(Item.key.in_(chunk))):
                    out[key] = h
        return out

    def write_batch(self, items: Sequence[NewItem], links: Iterable[tuple[str, str, str]] = (),
                    errors: Iterable[tuple[str, str | None, str]] = ()) -> WriteResult:
        """`_write_batch`, with a full disk reported as StorageFullError (nothing committed)."""
        try:
            return self._write_batch(items, links, errors)
        except (OperationalError, OSError) as exc:
            if is_disk_full(exc) or self.read_only:
                raise StorageFullError(
                    f"The disk holding the catalogue's database is full ({self.engine.url.database}"
                    "): nothing of this batch was stored. Free some space and run the same "
                    "command again."
                ) from exc
            raise

    def _write_batch(
        self,
        items: Sequence[NewItem],
        links: Iterable[tuple[str, str, str]] = (),
        errors: Iterable[tuple[str, str | None, str]] = (),
    ) -> WriteResult:
        """Insert or replace `items`, then link (media_key, text_key, kind) pairs; one transaction.

        An item whose key exists with another content hash is replaced (new id; the old id is
        reported in `removed` so the caller drops it from the vector index).
        """
        added: dict[str, int] = {}
        modalities: dict[int, str] = {}
        removed: dict[int, str] = {}
        with self._session.begin() as s:
            keys = [it.key for it in items]
            old = {
                row.key: row
                for i in range(0, len(keys), 500)
                for row in s.scalars(select(Item).where(Item.key.in_(keys[i : i + 500])))
            }
            for it in items:
                prev = old.get(it.key)
                if prev is not None:
                    if prev.content_hash == it.content_hash:
                        continue
                    removed[prev.id] = prev.modality
                    s.execute(delete(Item).where(Item.id == prev.id))
                    s.flush()
                row = _insert_item(s, it)
                added[it.key] = row.id
                modalities[row.id] = it.modality
            link_list = list(links)
            if link_list:
                need = sorted({k for a, b, _ in link_list for k in (a, b)})
                ids = dict(
                    row for i in range(0, len(need), 500)
                    for row in s.execute(select(Item.key, Item.id).where(Item.key.in_(need[i : i + 500])))
                )
                for media_key, text_key, kind in link_list:
                    if media_key in ids and text_key in ids:
                        s.merge(Link(media_id=ids[media_key], text_id=ids[text_key], kind=kind))
            # A key's error record is its latest outcome: re-running over the same bad file
            # must not count it twice, and a file that now indexes is no longer an error.
            error_list = list(errors)
            settled = sorted(set(added) | {key for key, _, _ in error_list})
            for i in range(0, len(settled), 500):
                s.execute(delete(IngestError).where(IngestError.key.in_(settled[i : i + 500])))
            for key, path, reason in error_list:
                s.add(IngestError(key=key, path=path, reason=reason))
        return WriteResult(added=added, modalities=modalities, removed=removed)

    def delete_items(self, ids: Sequence[int]) -> dict[int, str]:
        """Delete items (and their vectors, links, token sets); returns id -> modality deleted."""
        with self._session.begin() as s:
            rows = dict(s.execute(select(Item.id, Item.modality).where(Item.id.in_(list(ids)))).all())
            if rows:
                s.execute(delete(Item).where(Item.id.in_(list(rows))))
        return rows

    # -- reads ---------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self._session() as s:
            return dict(s.execute(select(Item.modality, func.count()).group_by(Item.modality)).all())

    def ids(self, modality: str) -> np.ndarray:
        """Sorted ids of the items of `modality` that have a vector."""
        with self._session() as s:
            rows = s.scalars(
                select(Item.id).join(Vector, Vector.item_id == Item.id)
                .where(Item.modality == modality).order_by(Item.id)
            ).all()
        return np.asarray(rows, dtype=np.int64)

    def iter_vectors(self, modality: str, dim: int, chunk: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) in id order, `chunk` rows at a time, so a rebuild has bounded memory."""
        last = -1
        while True:
            with self._session() as s:
                rows = s.execute(
                    select(Vector.item_id, Vector.data).join(Item, Item.id == Vector.item_id)
                    .where(Item.modality == modality, Vector.item_id > last)
                    .order_by(Vector.item_id).limit(chunk)
                ).all()
            if not rows:
                return
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            yield ids, vecs
            last = int(ids[-1])

    def vectors_for(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        with self._session() as s:
            rows = s.execute(select(Vector.item_id, Vector.data).where(Vector.item_id.in_(list(ids)))).all()
        return {r[0]: np.frombuffer(r[1], dtype=np.float32).reshape(dim) for r in rows}

    def token_sets(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        with self._session() as s:
            rows = s.scalars(select(TokenSet).where(TokenSet.item_id.in_(list(ids)))).all()
        return {
            r.item_id: np.frombuffer(r.data, dtype=np.float16).reshape(r.n_tokens, r.dim) for r in rows
        }

    def segments(self, item_id: int, dim: int) -> list[tuple[float, float, np.ndarray]]:
        with self._session() as s:
            rows = s.scalars(select(Segment).where(Segment.item_id == item_id).order_by(Segment.idx)).all()
        return [(r.offset_s, r.duration_s, np.frombuffer(r.data, dtype=np.float32).reshape(dim)) for r in rows]

    def get_items(self, ids: Sequence[int]) -> dict[int, ItemRecord]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        with self._session() as s:
            rows = s.scalars(select(Item).where(Item.id.in_(ids))).all()
            links = s.execute(
                select(Link.media_id, Link.text_id)
                .where(or_(Link.media_id.in_(ids), Link.text_id.in_(ids)))
                .order_by(Link.media_id, Link.text_id)
            ).all()
        out = {r.id: _record(r) for r in rows}
        for media_id, text_id in links:
            if media_id in out:
                out[media_id].linked.append(text_id)
            if text_id in out:
                out[text_id].linked.append(media_id)
        return out

    def get_item(self, item_id: int) -> ItemRecord | None:
        return self.get_items([item_id]).get(int(item_id))

    def keys_with_prefix(self, prefix: str) -> dict[str, int]:
        """key -> id for every key that starts with `prefix` (a range scan on the key index)."""
        # Byte-order comparison: SQLite's default; PostgreSQL needs "C" (locale collations can
        # sort the upper bound anywhere).
        key = Item.key.collate("C") if self.engine.dialect.name == "postgresql" else Item.key
        with self._session() as s:
            rows = s.execute(select(Item.key, Item.id).where(
                key >= prefix, key < prefix + "\U0010ffff")).all()
        return {k: i for k, i in rows if k.startswith(prefix)}

    def get_by_key(self, key: str) -> ItemRecord | None:
        with self._session() as s:
            item_id = s.scalar(select(Item.id).where(Item.key == key))
        return None if item_id is None else self.get_item(item_id)

    def iter_items(self, modality: str | None = None, chunk: int = 5000) -> Iterator[ItemRecord]:
        last = -1
        while True:
            with self._session() as s:
                q = select(Item.id).where(Item.id > last).order_by(Item.id).limit(chunk)
                if modality:
                    q = q.where(Item.modality == modality)
                ids = s.scalars(q).all()
            if not ids:
                return
            recs = self.get_items(ids)
            yield from (recs[i] for i in ids)
            last = ids[-1]

    def errors(self, limit: int = 100) -> list[tuple[str, str | None, str]]:
        with self._session() as s:
            rows = s.execute(
                select(IngestError.key, IngestError.path, IngestError.reason)
                .order_by(IngestError.id.desc()).limit(limit)
            ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def error_count(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count()).select_from(IngestError)) or 0)

    def clear_errors(self, keys: Sequence[str]) -> None:
        with self._session.begin() as s:
            s.execute(delete(IngestError).where(IngestError.key.in_(list(keys))))


def _record(r: Item) -> ItemRecord:
    return ItemRecord(
        id=r.id, key=r.key, modality=r.modality, path=r.path, content_hash=r.content_hash,
        mime=r.mime, size_bytes=r.size_bytes, width=r.width, height=r.height,
        duration=r.duration, text=r.text, attrs=dict(r.attrs or {}), source=r.source,
    )


def _insert_item(s: Session, it: NewItem) -> Item:
    """One item row with its vector, token set and segments (inside the caller's transaction)."""
    row = Item(
        key=it.key, modality=it.modality, path=it.path, content_hash=it.content_hash,
        mime=it.mime, size_bytes=it.size_bytes, width=it.width, height=it.height,
        duration=it.duration, text=it.text, attrs=dict(it.attrs), source=it.source,
    )
    s.add(row)
    s.flush()
    vec = np.ascontiguousarray(it.vector, dtype=np.float32).reshape(-1)
    s.add(Vector(item_id=row.id, data=vec.tobytes()))
    if it.tokens is not None:
        tok = np.ascontiguousarray(it.tokens, dtype=np.float16)
        s.add(TokenSet(item_id=row.id, n_tokens=tok.shape[0], dim=tok.shape[1], data=tok.tobytes()))
    for idx, (offset, dur, svec) in enumerate(it.segments):
        s.add(Segment(item_id=row.id, idx=idx, offset_s=offset, duration_s=dur,
                      data=np.asarray(svec, dtype=np.float32).tobytes()))
    return row
