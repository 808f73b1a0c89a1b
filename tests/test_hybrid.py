"""Fusion and media first (retrieval/hybrid.py) on a hand-made store: which item a hit stands
for, reciprocal rank fusion, a single channel keeping its own order and scores, and when a
spoken query's transcript counts as words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retrieval.errors import CrossmediaError
from retrieval.hybrid import Channel, Fuser, resolve_mode, spoken_words
from retrieval.store import NewItem, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Store, dict[str, int]]]:
    s = Store(f"sqlite:///{tmp_path / 'c.db'}")
    vec = np.ones(4, np.float32)

    def item(key: str, modality: str, text: str | None = None) -> NewItem:
        return NewItem(key=key, modality=modality, content_hash=key, vector=vec, text=text)

    s.write_batch(
        [
            item("img", "image"),
            item("img2", "image"),
            item("cap", "text", "a horse on a beach"),
            item("cap2", "text", "a red bus"),
            item("note", "text", "a loose note"),
            item("rec", "audio", "someone says hello there"),
        ],
        links=[("img", "cap", "caption"), ("img2", "cap2", "caption")],
    )
    ids = {r.key: r.id for r in s.iter_items()}
    yield s, ids
    s.close()


def test_captions_stand_for_their_media(store: tuple[Store, dict[str, int]]) -> None:
    s, ids = store
    hits = [(ids["cap"], 0.9, "text"), (ids["note"], 0.8, "text"), (ids["img2"], 0.7, "image")]
    any_ = Fuser(s, "any").fuse([Channel("vector", hits)], 10)
    assert [(u.id, u.modality) for u in any_] == [
        (ids["img"], "image"),
        (ids["note"], "text"),
        (ids["img2"], "image"),
    ]
    assert any_[0].matched == [
        {"id": ids["cap"], "text": "a horse on a beach", "channel": "vector", "score": 0.9}
    ]
    assert any_[0].score == pytest.approx(0.9)  # one channel keeps its own scores
    image = Fuser(s, "image").fuse([Channel("vector", hits)], 10)
    assert [u.id for u in image] == [ids["img"], ids["img2"]]  # the loose note is no image
    text = Fuser(s, "text").fuse([Channel("vector", hits)], 10)
    assert [u.id for u in text] == [ids["cap"], ids["note"]]  # text asked: captions as text


def test_reciprocal_rank_fusion(store: tuple[Store, dict[str, int]]) -> None:
    s, ids = store
    vector = Channel("vector", [(ids["img2"], 0.9, "image"), (ids["img"], 0.5, "image")])
    lexical = Channel("lexical", [(ids["cap"], 12.0, "text")])  # a caption of img, by words
    fused = Fuser(s, "image", rrf_k=60).fuse([vector, lexical], 10)
    assert [u.id for u in fused] == [ids["img"], ids["img2"]]  # 1/62 + 1/61 beats 1/61
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert {m["channel"] for m in fused[0].matched} == {"lexical"}
    weighted = Fuser(s, "image", rrf_k=60, weights={"lexical": 0.0}).fuse([vector, lexical], 10)
    assert [u.id for u in weighted] == [ids["img2"], ids["img"]]


def test_single_channel_keeps_its_order_even_with_mixed_scores(
    store: tuple[Store, dict[str, int]],
) -> None:
    """A re-ranked top k followed by first-stage scores must not be re-sorted by score."""
    s, ids = store
    hits = [(ids["img"], -1.0, "image"), (ids["img2"], 0.8, "image")]
    assert [u.id for u in Fuser(s, "image").fuse([Channel("vector", hits)], 10)] == [
        ids["img"],
        ids["img2"],
    ]


def test_a_transcript_found_by_words_is_evidence(store: tuple[Store, dict[str, int]]) -> None:
    s, ids = store
    fused = Fuser(s, "audio").fuse([Channel("lexical", [(ids["rec"], 3.0, "audio")])], 5)
    assert fused[0].matched[0]["text"] == "someone says hello there"


def test_spoken_words_and_modes() -> None:
    assert spoken_words("We call it bear") == "We call it bear"
    for noise in ("AHHHHH!", "Help! Help!", "Bye bye!", "BOO! BOO! BOO!", "", None):
        assert spoken_words(noise) is None
    assert resolve_mode(None, True) == "hybrid" and resolve_mode(None, False) == "vector"
    assert resolve_mode("lexical", False, lenient=True) == "lexical"
    with pytest.raises(CrossmediaError, match="needs words"):
        resolve_mode("lexical", False)
    with pytest.raises(CrossmediaError, match="Unknown search mode"):
        resolve_mode("fuzzy", True)
