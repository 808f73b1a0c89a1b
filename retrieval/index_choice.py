"""The index type follows the catalogue: after writes, each modality's index moves to the pinned
factory string, or to the automatic choice for its size (`retrieval.index.auto_factory`: exact
search while small, IVF beyond, with more lists as it grows), its search knob tuned to the recall
target at build time (`retrieval.index_tuning`).

A new index is built from a snapshot of the store without the write lock, so searches (and
writes) go on using the old one; installing it takes the lock only to catch up with the rows
written meanwhile and to save it (`Catalogue.save_index`).
"""

from __future__ import annotations

import logging
from typing import Any

from retrieval.catalogue import Catalogue
from retrieval.index import EXACT_BELOW, FaissIndex, auto_lists
from retrieval.index_build import DEFAULT_FACTORY, build_index
from retrieval.modality import ALL_MODALITIES

log = logging.getLogger(__name__)


def wanted_change(cat: Catalogue, modality: str, count: int | None = None) -> str | None:
    """The factory string `modality`'s index should move to now (holding `count` vectors,
    default what it holds), or None to keep it."""
    if cat.space is None:
        return None
    index = cat.index(modality)
    n = index.count() if count is None else count
    if not n:
        return None
    want = cat.files.wanted_factory(modality, count=n)
    if cat.store.get_meta("index_factory"):  # pinned: applied once there are vectors to train on
        return want if index.factory == DEFAULT_FACTORY and want != DEFAULT_FACTORY else None
    have = index.factory
    if want == have:
        return None
    if want == DEFAULT_FACTORY:  # shrinking: back to exact search only well below the threshold
        return want if n < EXACT_BELOW // 2 else None
    old_lists, new_lists = auto_lists(have), auto_lists(want)
    same_storage = have.split(",")[-1] == want.split(",")[-1]
    if old_lists and new_lists and same_storage and new_lists < 2 * old_lists:
        return None  # grow the list count in steps of 4x the vectors, not on every write
    return want


def build_for(cat: Catalogue, modality: str, factory: str) -> tuple[FaissIndex, dict[str, Any]]:
    """The new index over the store as it is now (no lock: searches and writes go on)."""
    space = cat.space
    assert space is not None, "an index is built in a bound embedding space"
    return build_index(cat.store, modality, factory, space.dim)


def upgrade_indexes(cat: Catalogue) -> list[str]:
    """Move every modality whose index type no longer fits to the wanted one; the modalities
    moved. An index FAISS cannot train yet (fewer vectors than lists) stays as it is."""
    done = []
    for modality in map(str, ALL_MODALITIES):
        want = wanted_change(cat, modality)
        if want is None:
            continue
        try:
            index, tuning = build_for(cat, modality, want)
        except RuntimeError as exc:
            log.info("%s index stays %s for now: %s", modality, cat.index(modality).factory, exc)
            continue
        cat.save_index(modality, index, tuning)
        done.append(modality)
    return done
