"""Bulk writes for imports of many items at once (`crossmedia import-vectors`): one transaction
per batch, rows inserted with executemany (SQLAlchemy Core, ids returned in parameter order)
instead of one ORM object per row: ~20x the rate of `write_batch` for items without token sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Connection

from retrieval.store.lexical import body_of
from retrieval.store.models import Item

BULK_CACHE_KIB = 256 * 1024  # SQLite page cache of a bulk-writing connection (default: 2 MiB)
DEFERRED = tuple(sorted(str(ix.name) for ix in Item.__table__.indexes))  # type: ignore[attr-defined]


@contextmanager
def deferred_indexes(store: Any) -> Iterator[None]:
    """Build the items table's secondary indexes once, after a bulk import into an empty
    catalogue, instead of row by row: random 64-hex content hashes make every insert a B-tree
    update somewhere else. A crash in between leaves them missing; every open of the store
    builds missing ones again (`Store.ensure_indexes`). Lookups by key keep their unique index."""
    with store.engine.begin() as conn:
        for name in DEFERRED:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    try:
        yield
    finally:
        store.ensure_indexes()


@dataclass(slots=True)
class BulkRow:
    """One item of a bulk import: its row fields (as `Item` columns) and its vector as stored
    (float32 little-endian bytes)."""

    key: str
    modality: str
    content_hash: str
    vector: bytes
    path: str | None = None
    text: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str | None = None


def bulk_insert(
    store: Any,
    rows: Sequence[BulkRow],
    links: Sequence[tuple[str, str, str]] = (),
    all_new: bool = False,
) -> tuple[dict[str, int], dict[int, str]]:
    """Insert `rows` (keys not yet stored, or stored with another content hash: replaced) and
    link (media key, text key, kind) pairs, in one transaction. Returns (key -> new id, the
    replaced items' id -> modality). `all_new`: the caller knows no key is stored (an empty
    catalogue), so none is looked up. The caller holds the catalogue's write lock: ids are
    assigned here, after the largest in use (the sequence is moved past them on PostgreSQL)."""
    if not rows:
        return {}, {}
    fields = store.lexical_fields
    with store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":  # B-tree pages of the key and hash indexes stay cached
            conn.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        replaced = {} if all_new else _drop_replaced(conn, [r.key for r in rows])
        first = int(conn.execute(select(func.coalesce(func.max(Item.id), 0))).scalar_one()) + 1
        ids = {r.key: first + n for n, r in enumerate(rows)}
        now: Any = datetime.now(UTC)
        if conn.dialect.name == "sqlite":  # SQLAlchemy's own text form of a DateTime there
            now = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        _insert_rows(conn, "items", ITEM_COLUMNS, [_item_tuple(r, ids[r.key], now) for r in rows])
        _insert_rows(
            conn,
            "vectors",
            ("item_id", "data"),
            [(ids[r.key], r.vector) for r in rows],
        )
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('items', 'id'), :n)"),
                {"n": first + len(rows) - 1},
            )
        store.lexical.add(
            conn,
            (
                (ids[r.key], body_of(r.modality, r.text, r.path, r.attrs, fields))
                for r in rows
                if r.text or r.path or r.attrs
            ),
        )
        pairs = [(ids[m], ids[t], kind) for m, t, kind in links if m in ids and t in ids]
        _insert_rows(conn, "links", ("media_id", "text_id", "kind"), pairs)
    return ids, replaced


ITEM_COLUMNS = (
    "id", "key", "modality", "path", "content_hash", "text", "attrs", "source", "created_at"
)  # fmt: skip


def _item_tuple(r: BulkRow, item_id: int, now: Any) -> tuple[Any, ...]:
    attrs = json.dumps(r.attrs) if r.attrs else "{}"
    return (item_id, r.key, r.modality, r.path, r.content_hash, r.text, attrs, r.source, now)


def _insert_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """executemany straight to the driver: the ORM's per-row processing would cost more than
    the database's own work here."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cols = ", ".join(columns)
    sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join([mark] * len(columns))})"
    conn.exec_driver_sql(sql, rows)


def _drop_replaced(conn: Connection, keys: list[str]) -> dict[int, str]:
    gone: dict[int, str] = {}
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        old = dict(conn.execute(select(Item.id, Item.modality).where(Item.key.in_(chunk))).all())
        if old:
            conn.execute(delete(Item).where(Item.id.in_(list(old))))
            gone.update(old)
    return gone
