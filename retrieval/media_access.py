"""Which media files a catalogue may hand out: only those inside its data directory (uploads)
or inside a root that ingestion read from (a manifest's folder, an indexed folder, a path the
operator allowed with `--allow-outside`). The roots are kept in the store, so every process that
opens the catalogue (the API server above all) applies the same rule."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from retrieval.store import ItemRecord, Store

META_KEY = "media_roots"


def media_roots(store: Store) -> list[Path]:
    raw = store.get_meta(META_KEY)
    return [Path(p) for p in json.loads(raw)] if raw else []


def add_media_roots(store: Store, roots: Iterable[Path]) -> None:
    known = media_roots(store)
    new = [Path(r).resolve() for r in roots if Path(r).resolve() not in known]
    if new:
        store.set_meta(META_KEY, json.dumps(sorted(str(p) for p in known + new)))


def inside(path: Path, roots: Iterable[Path]) -> bool:
    """True when `path` (symlinks resolved) lies in one of `roots`."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return any(real.is_relative_to(Path(r).resolve()) for r in roots)


def media_file(item: ItemRecord, roots: Iterable[Path]) -> Path | None:
    """The item's media file, if it exists and lies inside one of `roots`; None otherwise."""
    p = Path(item.path) if item.path is not None and item.modality != "text" else None
    return p if p is not None and p.is_file() and inside(p, roots) else None
