"""The index type follows the catalogue: after a write, an index still on the exact fallback
moves to the pinned factory string, or to the automatic choice once its modality outgrows exact
search (`retrieval.index.auto_factory`, nprobe saved in the file)."""

from __future__ import annotations

import logging

from retrieval.catalogue import Catalogue
from retrieval.index import FaissIndex, auto_nprobe
from retrieval.index_files import DEFAULT_FACTORY
from retrieval.modality import ALL_MODALITIES

log = logging.getLogger(__name__)


def upgrade_fallback_indexes(cat: Catalogue) -> list[str]:
    """Rebuild indexes still on the exact fallback into the catalogue's chosen factory.

    A trained type (IVF, PQ) cannot be built while there is nothing to train on, so a new
    catalogue's first index is Flat; once vectors exist, this gives it the type asked for, or
    the automatic choice once a modality outgrows exact search.
    Returns the modalities rebuilt.
    """
    if cat.space is None:
        return []
    done = []
    for modality in map(str, ALL_MODALITIES):
        want = cat.files.wanted_factory(modality)
        index = cat.index(modality)
        if want == DEFAULT_FACTORY or index.factory != DEFAULT_FACTORY or not index.count():
            continue
        try:
            index = cat.rebuild(modality, want)
        except RuntimeError as exc:  # e.g. fewer vectors than IVF lists: stay exact for now
            log.info("%s index stays %s for now: %s", modality, DEFAULT_FACTORY, exc)
            continue
        nprobe = auto_nprobe(want)
        if nprobe is not None and not cat.store.get_meta("index_factory"):
            assert isinstance(index, FaissIndex)
            index.set_search_params(nprobe=nprobe)
            cat.save_index(modality, index)
        done.append(modality)
    return done
