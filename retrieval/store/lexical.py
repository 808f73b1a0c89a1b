"""The lexical channel: full-text search over what items say and are called, kept in the same
transaction as the rows it describes.

- SQLite: an FTS5 table (`porter unicode61` tokenizer) ranked by BM25; rowid = item id; a trigger
  deletes an item's entry with the item.
- PostgreSQL: a `lexical` table with a stored `tsvector` (English configuration) and a GIN index,
  ranked by `ts_rank_cd`; the foreign key deletes an item's entry with the item.

Same contract on both: `search(words, k, modalities, ids)` -> [(item id, score)], best first,
score > 0, ties by id; a query matches items containing ANY of its words (OR), so ranking, not
matching, decides. What an item contributes (`body`): its text (a caption, a .txt file, the
transcript of a recording), and, where the catalogue allows it, its file name and string
attributes (`LEXICAL_FIELDS`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import PurePath
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

ALL_FIELDS = ("text", "name", "attrs")
_INTERNAL_ATTRS = {"caption_of", "duplicate_of"}
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_WORDS = 64
# Function words carry no evidence; dropping them from queries keeps both back ends alike
# (PostgreSQL's English configuration drops them; FTS5 has no stop list).
STOP_WORDS = frozenset(
    "a an and are as at be but by for from has have he her his i in into is it its of on or "
    "our she so that the their them there these they this to was we were what when where which "
    "who will with you your".split()
)


def body_of(
    modality: str,
    text_: str | None,
    path: str | None,
    attrs: dict[str, Any],
    fields: Sequence[str] = ALL_FIELDS,
) -> str:
    """The text an item is found by in the lexical channel."""
    parts = []
    if "text" in fields and text_:
        parts.append(text_)
    if "name" in fields and path and modality != "text":
        parts.append(re.sub(r"[_\-.]+", " ", PurePath(path).stem))
    if "attrs" in fields:
        parts.extend(v for k, v in attrs.items() if isinstance(v, str) and k not in _INTERNAL_ATTRS)
    return "\n".join(parts)


def query_words(query: str) -> list[str]:
    """The words of a query (letters and digits), lower-cased, without stop words (unless it
    has nothing else), first MAX_QUERY_WORDS distinct."""
    words = list(dict.fromkeys(_WORD.findall(query.lower())))
    content = [w for w in words if w not in STOP_WORDS]
    return (content or words)[:MAX_QUERY_WORDS]


class Lexical:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def create(self, conn: Connection) -> bool:
        """Create the table if needed; True when it is new (the caller backfills it)."""
        if self.dialect == "postgresql":
            exists = conn.execute(text("SELECT to_regclass('lexical')")).scalar() is not None
            conn.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS lexical (item_id BIGINT PRIMARY KEY REFERENCES "
                    "items(id) ON DELETE CASCADE, body TEXT NOT NULL, tsv tsvector GENERATED ALWAYS "
                    "AS (to_tsvector('english', body)) STORED)"
                )
            )
            conn.execute(
                text("CREATE INDEX IF NOT EXISTS ix_lexical_tsv ON lexical USING GIN (tsv)")
            )
            return not exists
        exists = (
            conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'lexical'")).first()
            is not None
        )
        conn.execute(
            text(
                "CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(body, tokenize='porter unicode61')"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER IF NOT EXISTS items_lexical_delete AFTER DELETE ON items "
                "BEGIN DELETE FROM lexical WHERE rowid = old.id; END"
            )
        )
        return not exists

    def add(self, conn: Connection, rows: Iterable[tuple[int, str]]) -> None:
        """Entries (item id, body) for new items, inside the caller's transaction."""
        params = [{"id": i, "body": b} for i, b in rows if b.strip()]
        if not params:
            return
        if self.dialect == "postgresql":
            conn.execute(
                text(
                    "INSERT INTO lexical (item_id, body) VALUES (:id, :body) "
                    "ON CONFLICT (item_id) DO UPDATE SET body = EXCLUDED.body"
                ),
                params,
            )
        else:
            conn.execute(text("DELETE FROM lexical WHERE rowid = :id"), params)
            conn.execute(text("INSERT INTO lexical (rowid, body) VALUES (:id, :body)"), params)

    def search(
        self,
        conn: Connection,
        query: str,
        k: int,
        modalities: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        words = query_words(query)
        if not words or k <= 0:
            return []
        where, params = _conditions(modalities, ids)
        params["k"] = k
        if self.dialect == "postgresql":
            params["q"] = " | ".join(words)
            sql = (
                "SELECT l.item_id, ts_rank_cd(l.tsv, q) AS score FROM lexical l "
                "JOIN items i ON i.id = l.item_id, to_tsquery('english', :q) q "
                f"WHERE l.tsv @@ q{where} ORDER BY score DESC, l.item_id LIMIT :k"
            )
        else:
            params["q"] = " OR ".join(f'"{w}"' for w in words)
            sql = (
                "SELECT l.rowid, -bm25(lexical) AS score FROM lexical l "
                f"JOIN items i ON i.id = l.rowid WHERE lexical MATCH :q{where} "
                "ORDER BY score DESC, l.rowid LIMIT :k"
            )
        return [(int(i), float(s)) for i, s in conn.execute(text(sql), params)]

    def count(self, conn: Connection) -> int:
        return int(conn.execute(text("SELECT count(*) FROM lexical")).scalar() or 0)

    def ids(self, conn: Connection) -> list[int]:
        col = "item_id" if self.dialect == "postgresql" else "rowid"
        return sorted(int(r[0]) for r in conn.execute(text(f"SELECT {col} FROM lexical")))


def _conditions(
    modalities: Sequence[str] | None, ids: Sequence[int] | None
) -> tuple[str, dict[str, Any]]:
    where, params = "", {}
    if modalities:
        names = [f"m{j}" for j in range(len(modalities))]
        where += f" AND i.modality IN ({', '.join(':' + n for n in names)})"
        params.update(dict(zip(names, modalities, strict=True)))
    if ids is not None:
        where += f" AND i.id IN ({', '.join(str(int(i)) for i in ids) or 'NULL'})"
    return where, params
