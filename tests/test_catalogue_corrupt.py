"""A damaged or stale index file is repaired from the store, with a note, and search answers
exactly as before: never empty, never stale."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import sqlite_url

from retrieval.catalogue import Catalogue
from retrieval.fsutil import quick_sha256_file, sha256_file
from retrieval.index_files import INFO_FILE
from retrieval.search import Query, SearchService
from retrieval.store import NewItem

Results = list[list[tuple[int, float]]]


def _queries(cat: Catalogue) -> list[Query]:
    entries = cat.entries  # type: ignore[attr-defined]
    return [Query(text=entries[i]["captions"][i % 5]) for i in (0, 4, 9, 17)] + [
        Query(text="a photo of something")
    ]


def _results(cat: Catalogue, encoder: Any, queries: list[Query]) -> Results:
    service = SearchService(cat, encoder)
    out = []
    for target in ("image", "text", "any"):
        for res in service.search_many(queries, target=target, k=7):
            out.append([(h.id, round(h.score, 5)) for h in res.hits])
    return out


def _reopen(cat: Catalogue) -> Catalogue:
    return Catalogue.open(cat.data_dir, db_url=sqlite_url(cat.data_dir), create=False)


def _assert_consistent(cat: Catalogue) -> None:
    for modality in ("image", "text"):
        np.testing.assert_array_equal(cat.index(modality).ids(), cat.store.ids(modality))
    info = json.loads((cat.data_dir / INFO_FILE).read_text())
    for modality in ("image", "text"):
        path = cat.data_dir / "index" / f"{modality}.faiss"
        assert info["indexes"][modality]["sha256"] == sha256_file(path)
        assert info["indexes"][modality]["count"] == len(cat.store.ids(modality))


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    path.write_bytes(bytes(data))


def _garbage_with_matching_record(path: Path) -> None:
    path.write_bytes(b"not a faiss index at all" * 7)
    info_path = path.parent.parent / INFO_FILE
    info = json.loads(info_path.read_text())
    record = info["indexes"][path.stem]
    record.update(sha256=sha256_file(path), bytes=path.stat().st_size, delta_bytes=0)
    record["quick_sha256"] = quick_sha256_file(path)
    info_path.write_text(json.dumps(info))


DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "flipped-bytes": (_flip_middle, "image", "checksum mismatch"),
    "truncated": (
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "text",
        "checksum mismatch",
    ),
    "empty": (lambda p: p.write_bytes(b""), "image", "checksum mismatch"),
    "deleted": (lambda p: p.unlink(), "text", "missing"),
    "garbage-with-matching-checksum": (_garbage_with_matching_record, "image", "unreadable"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_index_file_is_rebuilt(
    tiny_catalogue: Catalogue, tiny_encoder: Any, damage: str
) -> None:
    queries = _queries(tiny_catalogue)
    before = _results(tiny_catalogue, tiny_encoder, queries)
    assert all(before)
    tiny_catalogue.close()
    harm, modality, why = DAMAGE[damage]
    harm(tiny_catalogue.data_dir / "index" / f"{modality}.faiss")

    with _reopen(tiny_catalogue) as cat:
        assert _results(cat, tiny_encoder, queries) == before
        assert any(
            note.startswith(f"{modality} index: ") and why in note for note in cat.repairs
        ), cat.repairs
        _assert_consistent(cat)
    with _reopen(tiny_catalogue) as cat:  # the repair was saved: nothing left to fix
        assert _results(cat, tiny_encoder, queries) == before
        assert cat.repairs == []


def test_garbage_info_file_rebuilds_every_index(
    tiny_catalogue: Catalogue, tiny_encoder: Any
) -> None:
    queries = _queries(tiny_catalogue)
    before = _results(tiny_catalogue, tiny_encoder, queries)
    tiny_catalogue.close()
    (tiny_catalogue.data_dir / INFO_FILE).write_text('{"indexes": {"image": ')
    with _reopen(tiny_catalogue) as cat:
        assert _results(cat, tiny_encoder, queries) == before
        assert any("index_info.json was unreadable" in note for note in cat.repairs)
        assert any(n.startswith("image index:") for n in cat.repairs)
        assert any(n.startswith("text index:") for n in cat.repairs)
        _assert_consistent(cat)


def _new_texts(encoder: Any, texts: list[str]) -> list[NewItem]:
    vecs = encoder.encode_texts(texts)
    return [
        NewItem(key=f"late-{i}", modality="text", content_hash=f"h{i}", vector=v, text=t)
        for i, (t, v) in enumerate(zip(texts, vecs, strict=True))
    ]


def test_index_missing_the_last_batch_catches_up(
    tiny_catalogue: Catalogue, tiny_encoder: Any
) -> None:
    texts = ["a red kite over a beach", "three cups of tea", "an empty parking lot at night"]
    result = tiny_catalogue.write(_new_texts(tiny_encoder, texts), save=False)
    assert len(result.added) == 3
    tiny_catalogue.close()  # as if killed: the store has the batch, the index file does not

    with _reopen(tiny_catalogue) as cat:
        np.testing.assert_array_equal(cat.index("text").ids(), cat.store.ids("text"))
        assert any("caught up" in n and "+3 / -0" in n for n in cat.repairs), cat.repairs
        service = SearchService(cat, tiny_encoder)
        for text in texts:
            hit = service.search(Query(text=text), target="text", k=1).hits[0]
            assert hit.id == result.added[f"late-{texts.index(text)}"]
        _assert_consistent(cat)


@pytest.mark.parametrize("factory", ["Flat", "IVF2,Flat"])
def test_index_ahead_of_the_store_drops_extra_ids(
    tiny_catalogue: Catalogue, tiny_encoder: Any, factory: str
) -> None:
    if factory != "Flat":
        tiny_catalogue.rebuild("image", factory)
    doomed = tiny_catalogue.store.ids("image")[[0, 5, 11]].tolist()
    tiny_catalogue.store.delete_items(doomed)  # behind the index's back
    tiny_catalogue.close()
    with _reopen(tiny_catalogue) as cat:
        _assert_consistent(cat)  # indexes load (and are verified) on first use
        assert cat.index("image").factory == factory
        assert any(n.startswith("image index:") and "+0 / -3 ids" in n for n in cat.repairs), (
            cat.repairs
        )
        found = {h[0] for r in _results(cat, tiny_encoder, _queries(tiny_catalogue)) for h in r}
        assert found and not found & set(doomed)


def test_delete_item_removes_media_and_its_own_captions(tiny_catalogue: Catalogue) -> None:
    image_id = int(tiny_catalogue.store.ids("image")[3])
    captions = tiny_catalogue.get_item(image_id).linked  # type: ignore[union-attr]
    assert len(captions) == 5
    assert tiny_catalogue.delete_item(image_id)
    assert not tiny_catalogue.delete_item(image_id)
    assert tiny_catalogue.store.get_items([image_id, *captions]) == {}
    _assert_consistent(tiny_catalogue)
    tiny_catalogue.close()
    with _reopen(tiny_catalogue) as cat:
        _assert_consistent(cat)
        assert cat.repairs == []


@pytest.mark.parametrize("factory", ["HNSW8", "IVF2,Flat"])
def test_replace_in_an_index_that_cannot_remove(
    tiny_catalogue: Catalogue, tiny_encoder: Any, factory: str
) -> None:
    """Such indexes are rebuilt on replacement; the new row must then not be added twice."""
    tiny_catalogue.rebuild("image", factory)
    assert tiny_catalogue.index("image").factory == factory
    old = tiny_catalogue.store.iter_items("image").__next__()
    vec = tiny_encoder.encode_texts(["not the same photo any more"])[0]
    item = NewItem(key=old.key, modality="image", content_hash="changed", vector=vec, path=old.path)
    result = tiny_catalogue.write([item])
    assert result.removed == {old.id: "image"}
    ids = tiny_catalogue.index("image").ids()
    assert len(np.unique(ids)) == len(ids)
    _assert_consistent(tiny_catalogue)
    scores, got = tiny_catalogue.index("image").search(vec[None, :], 2)
    assert got[0, 0] == result.added[old.key] and got[0, 1] != got[0, 0]
    tiny_catalogue.close()
    with _reopen(tiny_catalogue) as cat:
        assert cat.repairs == [] and cat.index("image").factory == factory
        _assert_consistent(cat)
