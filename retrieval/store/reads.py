"""The read side of the store: counts, ids, vectors, token sets, item records, the lexical
channel. Mixed into `Store` (store.py), which owns the engine, the session factory and writes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import aliased

from retrieval.store.models import IngestError, Item, Link, Segment, TokenSet, Vector
from retrieval.store.records import ItemRecord

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import sessionmaker

    from retrieval.store.lexical import Lexical


class StoreReads:
    engine: Engine
    _session: sessionmaker
    lexical: Lexical

    def counts(self) -> dict[str, int]:
        with self._session() as s:
            return dict(
                s.execute(select(Item.modality, func.count()).group_by(Item.modality)).all()
            )

    def ids(self, modality: str) -> np.ndarray:
        """Sorted ids of the items of `modality` that have a vector."""
        with self._session() as s:
            rows = s.scalars(
                select(Item.id)
                .join(Vector, Vector.item_id == Item.id)
                .where(Item.modality == modality)
                .order_by(Item.id)
            ).all()
        return np.asarray(rows, dtype=np.int64)

    def max_id(self) -> int:
        """The largest item id in use (0 when empty)."""
        with self._session() as s:
            return int(s.execute(select(func.max(Item.id))).scalar() or 0)

    def id_summary(self, modality: str) -> tuple[int, int, int, int]:
        """(count, sum, min, max) of `ids(modality)`, in one aggregate (all zero when empty).
        Every item row has its vector (both are written in one transaction; a vector goes with
        its item), so this reads the modality index alone: 0.3 s at 1M rows on SQLite, against
        1.0 s joined with the 1 GB vectors table, on every open of the catalogue."""
        with self._session() as s:
            n, total, lo, hi = s.execute(
                select(
                    func.count(Item.id), func.sum(Item.id), func.min(Item.id), func.max(Item.id)
                ).where(Item.modality == modality)
            ).one()
        return (int(n), int(total or 0), int(lo or 0), int(hi or 0)) if n else (0, 0, 0, 0)

    def iter_vectors(
        self, modality: str, dim: int, chunk: int = 20_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) in id order, `chunk` rows at a time, so a rebuild has bounded memory.
        One streamed query on a plain connection: ~3x the rate of ORM rows (1M vectors read
        in ~7 s on this machine)."""
        query = (
            select(Vector.item_id, Vector.data)
            .join(Item, Item.id == Vector.item_id)
            .where(Item.modality == modality)
            .order_by(Vector.item_id)
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(query)
            while rows := result.fetchmany(chunk):
                ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                yield ids, vecs.reshape(len(rows), dim)

    def sample_vectors(self, modality: str, n: int, dim: int, seed: int = 0) -> np.ndarray:
        """Up to n stored vectors of `modality`, a seeded random sample, (m, dim)."""
        ids = self.ids(modality)
        if len(ids) > n:
            ids = np.sort(np.random.default_rng(seed).choice(ids, n, replace=False))
        found = self.vectors_for(ids.tolist(), dim)
        return (
            np.stack([found[int(i)] for i in ids]) if len(ids) else np.zeros((0, dim), np.float32)
        )

    def vectors_for(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        with self._session() as s:
            rows = s.execute(
                select(Vector.item_id, Vector.data).where(Vector.item_id.in_(list(ids)))
            ).all()
        return {r[0]: np.frombuffer(r[1], dtype=np.float32).reshape(dim) for r in rows}

    def token_sets(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        with self._session() as s:
            rows = s.scalars(select(TokenSet).where(TokenSet.item_id.in_(list(ids)))).all()
        return {
            r.item_id: np.frombuffer(r.data, dtype=np.float16).reshape(r.n_tokens, r.dim)
            for r in rows
        }

    def segments(self, item_id: int, dim: int) -> list[tuple[float, float, np.ndarray]]:
        with self._session() as s:
            rows = s.scalars(
                select(Segment).where(Segment.item_id == item_id).order_by(Segment.idx)
            ).all()
        return [
            (r.offset_s, r.duration_s, np.frombuffer(r.data, dtype=np.float32).reshape(dim))
            for r in rows
        ]

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
            rows = s.execute(
                select(Item.key, Item.id).where(key >= prefix, key < prefix + "\U0010ffff")
            ).all()
        return {k: i for k, i in rows if k.startswith(prefix)}

    def keys_with_source_prefix(self, prefix: str) -> dict[str, int]:
        """key -> id for every item whose `source` (where ingestion read it) starts with
        `prefix`: the items one manifest wrote (`sync`)."""
        col = Item.source.collate("C") if self.engine.dialect.name == "postgresql" else Item.source
        with self._session() as s:
            rows = s.execute(
                select(Item.key, Item.id, Item.source).where(
                    col >= prefix, col < prefix + "\U0010ffff"
                )
            ).all()
        return {k: i for k, i, src in rows if src is not None and src.startswith(prefix)}

    def media_with_caption_texts(self, texts: Sequence[str], modality: str) -> dict[str, list[int]]:
        """caption text -> ids of `modality` items linked to a text item with exactly that text
        (`eval`: identical captions on several items make all of them relevant)."""
        media = aliased(Item)
        out: dict[str, list[int]] = {}
        distinct = sorted(set(texts))
        for start in range(0, len(distinct), 500):
            with self._session() as s:
                rows = s.execute(
                    select(Item.text, Link.media_id)
                    .join(Link, Link.text_id == Item.id)
                    .join(media, media.id == Link.media_id)
                    .where(
                        Item.modality == "text",
                        Item.text.in_(distinct[start : start + 500]),
                        media.modality == modality,
                    )
                ).all()
            for text, mid in rows:
                out.setdefault(text, []).append(int(mid))
        return out

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
                .order_by(IngestError.id.desc())
                .limit(limit)
            ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def error_count(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count()).select_from(IngestError)) or 0)

    def clear_errors(self, keys: Sequence[str]) -> None:
        with self._session.begin() as s:
            s.execute(delete(IngestError).where(IngestError.key.in_(list(keys))))

    def modalities_of(self, ids: Sequence[int]) -> dict[int, str]:
        with self._session() as s:
            return dict(
                s.execute(select(Item.id, Item.modality).where(Item.id.in_(list(ids)))).all()
            )

    def filter_ids(self, condition: Any, modality: str) -> np.ndarray:
        """Sorted ids of `modality` items with a vector that satisfy the SQL `condition`
        (see retrieval/filters.py)."""
        with self._session() as s:
            rows = s.scalars(
                select(Item.id)
                .join(Vector, Vector.item_id == Item.id)
                .where(Item.modality == modality, condition)
                .order_by(Item.id)
            ).all()
        return np.asarray(rows, dtype=np.int64)

    def lexical_search(
        self,
        query: str,
        k: int,
        modalities: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Full-text hits [(id, score)], best first (see retrieval/store/lexical.py)."""
        with self.engine.connect() as conn:
            return self.lexical.search(conn, query, k, modalities, ids)


def _record(r: Item) -> ItemRecord:
    return ItemRecord(
        id=r.id,
        key=r.key,
        modality=r.modality,
        path=r.path,
        content_hash=r.content_hash,
        mime=r.mime,
        size_bytes=r.size_bytes,
        width=r.width,
        height=r.height,
        duration=r.duration,
        text=r.text,
        attrs=dict(r.attrs or {}),
        source=r.source,
    )
