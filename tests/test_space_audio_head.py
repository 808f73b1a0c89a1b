"""The audio head is part of what a catalogue's vectors mean (issue 15): a catalogue holding audio
refuses vectors and queries of another audio head, with the re-index fix; without audio it moves
to the new head. Catalogues made before the head was recorded keep working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import sqlite_url, unit_rows

from retrieval.catalogue import Catalogue
from retrieval.encoders.base import EmbeddingSpace
from retrieval.errors import SpaceMismatchError
from retrieval.store import NewItem

DIM = 16


def _space(audio_head: str) -> EmbeddingSpace:
    return EmbeddingSpace("synthetic", "heads-t", DIM, audio_head=audio_head)


def _write(cat: Catalogue, space: EmbeddingSpace, modality: str, n: int, start: int = 0) -> None:
    cat.bind_space(space)
    vecs = unit_rows(n, DIM, seed=start)
    cat.write(
        [NewItem(key=f"{modality}{start + i}", modality=modality, content_hash=f"h{start + i}",
                 vector=vecs[i]) for i in range(n)]
    )  # fmt: skip


def _open(data_dir: Path) -> Catalogue:
    return Catalogue.open(data_dir, db_url=sqlite_url(data_dir))


def test_the_audio_head_is_recorded_but_not_in_the_key() -> None:
    a, b = _space("audio-v1"), _space("audio-v2")
    assert a == b and a.key() == b.key()  # re-rankers and feature caches stay valid
    assert EmbeddingSpace.from_json(a.to_json()).audio_head == "audio-v1"


def test_a_catalogue_with_audio_refuses_another_audio_head(tmp_path: Path) -> None:
    with _open(tmp_path) as cat:
        _write(cat, _space("audio-v1"), "audio", 7)
        _write(cat, _space("audio-v1"), "image", 5, start=50)
        for act in (lambda: cat.bind_space(_space("audio-v2")),
                    lambda: cat.check_space(_space("audio-v2"))):  # fmt: skip
            with pytest.raises(SpaceMismatchError, match="audio head 'audio-v1'.*Re-index"):
                act()
        assert cat.space is not None and cat.space.audio_head == "audio-v1"
        cat.check_space(_space(""))  # a model without an audio head: its queries are not audio


def test_without_audio_the_catalogue_moves_to_the_new_audio_head(tmp_path: Path) -> None:
    with _open(tmp_path) as cat:
        _write(cat, _space("audio-v1"), "image", 5)
        _write(cat, _space("audio-v2"), "audio", 3, start=20)
        assert cat.space is not None and cat.space.audio_head == "audio-v2"
        with pytest.raises(SpaceMismatchError):
            cat.check_space(_space("audio-v1"))


def test_a_catalogue_made_before_the_head_was_recorded_adopts_it(tmp_path: Path) -> None:
    with _open(tmp_path) as cat:
        _write(cat, _space("audio-v1"), "audio", 4)
        old = json.loads(cat.store.get_meta("space") or "{}")
        del old["audio_head"]  # as catalogues made before this change recorded it
        cat.store.set_meta("space", json.dumps(old))
        cat.check_space(_space("audio-v2"))  # unknown: trusted, as before
        _write(cat, _space("audio-v1"), "audio", 2, start=30)
        assert cat.space is not None and cat.space.audio_head == "audio-v1"
