"""The metadata store: SQLAlchemy 2 over SQLite (WAL) by default, any SQLAlchemy URL otherwise.

Every batch of items is written in one transaction together with its vectors, token sets and
links, so a crash leaves either the whole batch or none of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from retrieval.errors import StorageFullError
from retrieval.fsutil import is_disk_full, low_on_space
from retrieval.store.connect import make_engine, read_only_sqlite_engine
from retrieval.store.lexical import ALL_FIELDS, Lexical, body_of
from retrieval.store.models import Base, IngestError, Item, Link, Meta, Segment, TokenSet, Vector
from retrieval.store.reads import StoreReads
from retrieval.store.records import NewItem, WriteResult

SCHEMA_VERSION = "1"


class Store(StoreReads):
    def __init__(self, url: str) -> None:
        self.url = url
        self.read_only: str | None = None  # why the store could only be opened for reading
        try:
            self.engine = make_engine(url)
            self.lexical = Lexical(self.engine)
            Base.metadata.create_all(self.engine)
            self.ensure_indexes()
            self._session = sessionmaker(self.engine, expire_on_commit=False)
            with self._session.begin() as s:
                if s.get(Meta, "schema_version") is None:
                    s.add(Meta(key="schema_version", value=SCHEMA_VERSION))
                if self.lexical.create(s.connection()):
                    self._backfill_lexical(s)
        except OperationalError as exc:
            self._open_read_only(exc)
            self.lexical = Lexical(self.engine)

    def ensure_indexes(self) -> None:
        """Create the items table's indexes where missing (a bulk import interrupted while
        they were deferred, `bulk.deferred_indexes`); a catalog lookup when they exist."""
        with self.engine.begin() as conn:
            for index in Base.metadata.tables["items"].indexes:
                index.create(conn, checkfirst=True)

    @property
    def lexical_fields(self) -> tuple[str, ...]:
        """What media items are found by in the lexical channel (see lexical.body_of)."""
        raw = self.get_meta("lexical_fields")
        return tuple(json.loads(raw)) if raw else ALL_FIELDS

    def set_lexical_fields(self, fields: Sequence[str]) -> None:
        """Choose the fields before the first write (the bench indexes text and transcripts only)."""
        self.set_meta("lexical_fields", json.dumps(list(fields)))

    def _backfill_lexical(self, s: Session) -> None:
        """A catalogue made before the lexical channel existed gets its entries once."""
        fields = self.lexical_fields_in(s)
        rows = s.execute(select(Item.id, Item.modality, Item.text, Item.path, Item.attrs)).all()
        self.lexical.add(
            s.connection(), ((r[0], body_of(r[1], r[2], r[3], r[4] or {}, fields)) for r in rows)
        )

    @staticmethod
    def lexical_fields_in(s: Session) -> tuple[str, ...]:
        row = s.get(Meta, "lexical_fields")
        return tuple(json.loads(row.value)) if row else ALL_FIELDS

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
                for key, h in s.execute(
                    select(Item.key, Item.content_hash).where(Item.key.in_(chunk))
                ):
                    out[key] = h
        return out

    def write_batch(
        self,
        items: Sequence[NewItem],
        links: Iterable[tuple[str, str, str]] = (),
        errors: Iterable[tuple[str, str | None, str]] = (),
    ) -> WriteResult:
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
            fields = self.lexical_fields_in(s)
            bodies: list[tuple[int, str]] = []
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
                bodies.append((row.id, body_of(it.modality, it.text, it.path, it.attrs, fields)))
            self.lexical.add(s.connection(), bodies)
            link_list = list(links)
            if link_list:
                need = sorted({k for a, b, _ in link_list for k in (a, b)})
                ids = dict(
                    row
                    for i in range(0, len(need), 500)
                    for row in s.execute(
                        select(Item.key, Item.id).where(Item.key.in_(need[i : i + 500]))
                    )
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
            rows = dict(
                s.execute(select(Item.id, Item.modality).where(Item.id.in_(list(ids)))).all()
            )
            if rows:
                s.execute(delete(Item).where(Item.id.in_(list(rows))))
        return rows


def _insert_item(s: Session, it: NewItem) -> Item:
    """One item row with its vector, token set and segments (inside the caller's transaction)."""
    row = Item(
        key=it.key,
        modality=it.modality,
        path=it.path,
        content_hash=it.content_hash,
        mime=it.mime,
        size_bytes=it.size_bytes,
        width=it.width,
        height=it.height,
        duration=it.duration,
        text=it.text,
        attrs=dict(it.attrs),
        source=it.source,
    )
    s.add(row)
    s.flush()
    vec = np.ascontiguousarray(it.vector, dtype=np.float32).reshape(-1)
    s.add(Vector(item_id=row.id, data=vec.tobytes()))
    if it.tokens is not None:
        tok = np.ascontiguousarray(it.tokens, dtype=np.float16)
        s.add(TokenSet(item_id=row.id, n_tokens=tok.shape[0], dim=tok.shape[1], data=tok.tobytes()))
    for idx, (offset, dur, svec) in enumerate(it.segments):
        s.add(
            Segment(
                item_id=row.id,
                idx=idx,
                offset_s=offset,
                duration_s=dur,
                data=np.asarray(svec, dtype=np.float32).tobytes(),
            )
        )
    return row
