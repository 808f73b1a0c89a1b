"""Store reads for near-duplicates (retrieval/dedup.py, indexer/dedup_mark.py): exact copies by
content hash, and file paths in bulk. Functions of a `Store`, read-only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from retrieval.store.models import Item

if TYPE_CHECKING:
    from retrieval.store import Store


def ids_with_hashes(store: Store, modality: str, hashes: Sequence[str]) -> dict[str, int]:
    """content hash -> the lowest id of a `modality` item with that hash (exact copies)."""
    if not hashes:
        return {}
    with Session(store.engine) as s:
        rows = s.execute(
            select(Item.content_hash, func.min(Item.id))
            .where(Item.modality == modality, Item.content_hash.in_(list(set(hashes))))
            .group_by(Item.content_hash)
        ).all()
    return {h: int(i) for h, i in rows}


def hash_groups(store: Store, modality: str) -> list[list[int]]:
    """Ids of `modality` items that share a content hash (exact copies), in groups of >= 2."""
    with Session(store.engine) as s:
        dup = (
            select(Item.content_hash)
            .where(Item.modality == modality)
            .group_by(Item.content_hash)
            .having(func.count() > 1)
            .subquery()
        )
        rows = s.execute(
            select(Item.content_hash, Item.id)
            .where(Item.modality == modality, Item.content_hash.in_(select(dup)))
            .order_by(Item.content_hash, Item.id)
        ).all()
    groups: dict[str, list[int]] = {}
    for h, i in rows:
        groups.setdefault(h, []).append(int(i))
    return list(groups.values())


def paths_of(store: Store, ids: Sequence[int]) -> dict[int, str]:
    """id -> file path of the items that have one (without their links: cheap in bulk)."""
    with Session(store.engine) as s:
        rows = s.execute(
            select(Item.id, Item.path).where(Item.id.in_(list(ids)), Item.path.is_not(None))
        ).all()
    return {int(i): str(p) for i, p in rows}
