"""What `crossmedia info` and `crossmedia verify` report about a catalogue."""

from __future__ import annotations

from typing import Any

import numpy as np

from retrieval.catalogue import Catalogue
from retrieval.fsutil import sha256_file
from retrieval.index import FaissIndex
from retrieval.modality import ALL_MODALITIES


def describe(cat: Catalogue) -> dict[str, Any]:
    """Counts, space, index types and sizes, skipped files, and what opening it repaired."""
    space = cat.space
    db_file = cat.data_dir / "catalogue.db"
    return {
        "data_dir": str(cat.data_dir),
        "db": cat.store.engine.url.render_as_string(hide_password=True),
        "db_bytes": db_file.stat().st_size if db_file.exists() else None,
        "space": None if space is None else space.as_dict(),
        "counts": cat.counts(),
        "indexes": cat.files.summary(),
        "skipped_files": cat.store.error_count(),
        "repairs": list(cat.repairs),
        "degraded": cat.degraded,
    }


def verify(cat: Catalogue) -> dict[str, Any]:
    """The full check: every index file against its recorded checksum, its ids against the
    store's, and (for exact indexes) every stored vector against the one the index holds.
    Problems found are repaired the way opening the catalogue repairs them, and reported."""
    problems: list[str] = []
    checked: dict[str, int] = {}
    info = cat.files.read_info()["indexes"]
    for modality in map(str, ALL_MODALITIES):
        meta = info.get(modality)
        path = cat.files.path(modality)
        if meta and path.exists() and sha256_file(path) != meta.get("sha256"):
            problems.append(f"{modality}: index file checksum does not match its record")
        if cat.space is None:
            continue
        index = cat.index(modality)
        if not np.array_equal(index.ids(), cat.store.ids(modality)):
            problems.append(f"{modality}: index ids differ from the store's after repair")
        checked[modality] = _compare_vectors(cat, modality, index, problems)
    return {
        "ok": not problems,
        "problems": problems,
        "vectors_checked": checked,
        "repairs": list(cat.repairs),
        "degraded": cat.degraded,
    }


def _compare_vectors(cat: Catalogue, modality: str, index: object, problems: list[str]) -> int:
    """Stored vectors vs the index's own copies, where the index type keeps them exactly."""
    if not isinstance(index, FaissIndex) or index.factory != "Flat" or cat.space is None:
        return 0
    n = 0
    for ids, vecs in cat.store.iter_vectors(modality, cat.space.dim):
        held = index.reconstruct(ids)
        bad = ~np.all(np.isclose(held, vecs, atol=1e-6), axis=1)
        if bad.any():
            problems.append(
                f"{modality}: {int(bad.sum())} vectors differ from the store "
                f"(e.g. id {int(ids[bad][0])})"
            )
        n += len(ids)
    return n
