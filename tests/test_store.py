"""The metadata store on SQLite and PostgreSQL: batches, idempotence, replacement, links,
cascading deletes, chunked vector reads.

The PostgreSQL variant needs $CROSSMEDIA_TEST_PG_URL (a role allowed to create databases; each
run works in its own freshly created database). Locally it skips without it; under CI (CI=true)
a missing URL is a failure, so CI cannot silently lose these tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import unit_rows

from retrieval.store import NewItem, Store

DIM = 11


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    else:
        url = request.getfixturevalue("pg_fresh_url")
    s = Store(url)
    try:
        yield s
    finally:
        s.close()


def _image(key: str, vec: np.ndarray, h: str = "h0", **kw: object) -> NewItem:
    return NewItem(
        key=key,
        modality="image",
        content_hash=h,
        vector=vec,
        path=f"/x/{key}.jpg",
        tokens=np.full((3, 5), 0.5, dtype=np.float32),
        **kw,
    )  # type: ignore[arg-type]


def _text(key: str, vec: np.ndarray, text: str) -> NewItem:
    return NewItem(key=key, modality="text", content_hash=f"t:{text}", vector=vec, text=text)


def _seven(vecs: np.ndarray) -> list[NewItem]:
    """3 images and 4 captions: img0 <- cap0, cap1; img1 <- cap2; img2 and cap3 unlinked."""
    return [_image(f"img{i}", vecs[i], attrs={"n": i, "tags": ["a", "é"]}) for i in range(3)] + [
        _text(f"cap{i}", vecs[3 + i], f"caption {i}") for i in range(4)
    ]


LINKS = [("img0", "cap0", "caption"), ("img0", "cap1", "caption"), ("img1", "cap2", "caption")]


def test_schema_version_and_meta(store: Store) -> None:
    assert store.get_meta("schema_version") == "1"
    assert store.get_meta("space") is None
    store.set_meta("space", "a")
    store.set_meta("space", "b")
    assert store.get_meta("space") == "b"


def test_insert_batch(store: Store) -> None:
    vecs = unit_rows(7, DIM)
    res = store.write_batch(_seven(vecs), LINKS, [("bad", "/x/bad.jpg", "truncated")])
    assert set(res.added) == {"img0", "img1", "img2", "cap0", "cap1", "cap2", "cap3"}
    assert len(set(res.added.values())) == 7
    assert res.removed == {}
    assert {res.modalities[res.added[k]] for k in ("img0", "img1", "img2")} == {"image"}
    assert store.counts() == {"image": 3, "text": 4}
    np.testing.assert_array_equal(
        store.ids("image"), sorted(res.added[f"img{i}"] for i in range(3))
    )
    got = store.vectors_for([res.added["cap1"]], DIM)
    np.testing.assert_array_equal(got[res.added["cap1"]], vecs[4])
    rec = store.get_by_key("img2")
    assert (
        rec is not None and rec.attrs == {"n": 2, "tags": ["a", "é"]} and rec.path == "/x/img2.jpg"
    )
    assert store.get_by_key("nope") is None
    toks = store.token_sets([res.added["img0"]])[res.added["img0"]]
    assert toks.dtype == np.float16 and toks.shape == (3, 5) and np.all(toks == 0.5)
    assert store.errors() == [("bad", "/x/bad.jpg", "truncated")]
    assert store.error_count() == 1
    store.clear_errors(["bad"])
    assert store.error_count() == 0


def test_same_hash_rewrite_is_skipped(store: Store) -> None:
    vecs = unit_rows(7, DIM)
    first = store.write_batch(_seven(vecs), LINKS)
    again = store.write_batch(_seven(unit_rows(7, DIM, seed=5)), LINKS)
    assert again.added == {} and again.removed == {}
    assert store.counts() == {"image": 3, "text": 4}
    # The stored vector is still the first one: a same-hash write changes nothing.
    vid = first.added["img1"]
    np.testing.assert_array_equal(store.vectors_for([vid], DIM)[vid], vecs[1])
    assert store.existing(["img0", "cap3", "zzz"]) == {"img0": "h0", "cap3": "t:caption 3"}


def test_new_hash_replaces_and_reports_old_id(store: Store) -> None:
    vecs = unit_rows(7, DIM)
    first = store.write_batch(_seven(vecs), LINKS)
    old = first.added["img0"]
    new_vec = unit_rows(1, DIM, seed=9)[0]
    res = store.write_batch([_image("img0", new_vec, h="h1")])
    assert res.removed == {old: "image"}
    new = res.added["img0"]
    assert new != old and res.modalities == {new: "image"}
    assert store.get_item(old) is None
    assert store.vectors_for([old], DIM) == {} and store.token_sets([old]) == {}
    np.testing.assert_array_equal(store.vectors_for([new], DIM)[new], new_vec)
    assert store.counts() == {"image": 3, "text": 4}
    assert old not in store.ids("image") and new in store.ids("image")
    # The old item's caption links went with it; the captions stay.
    cap0 = store.get_by_key("cap0")
    assert cap0 is not None and cap0.linked == []


def test_links_resolved_by_key_both_directions(store: Store) -> None:
    res = store.write_batch(_seven(unit_rows(7, DIM)), LINKS + [("img2", "missing", "caption")])
    a = res.added
    items = store.get_items([a["img0"], a["img1"], a["img2"], a["cap0"], a["cap2"], a["cap3"]])
    assert items[a["img0"]].linked == sorted([a["cap0"], a["cap1"]])
    assert items[a["img1"]].linked == [a["cap2"]]
    assert items[a["img2"]].linked == []  # a link to an unknown key is dropped
    assert items[a["cap0"]].linked == [a["img0"]]
    assert items[a["cap2"]].linked == [a["img1"]]
    assert items[a["cap3"]].linked == []
    # Links to items written in an earlier batch resolve too, and re-linking is idempotent.
    res2 = store.write_batch(
        [_text("cap9", unit_rows(1, DIM)[0], "late")],
        [("img2", "cap9", "caption"), ("img0", "cap0", "caption")],
    )
    items = store.get_items([a["img2"], a["img0"]])
    assert items[a["img2"]].linked == [res2.added["cap9"]]
    assert items[a["img0"]].linked == sorted([a["cap0"], a["cap1"]])
    assert store.get_items([]) == {}


def test_delete_cascades(store: Store) -> None:
    res = store.write_batch(_seven(unit_rows(7, DIM)), LINKS)
    a = res.added
    img0 = store.get_item(a["img0"])
    assert img0 is not None
    seg_vec = unit_rows(1, DIM)[0]
    res_seg = store.write_batch(
        [
            NewItem(
                key="snd",
                modality="audio",
                content_hash="s",
                vector=seg_vec,
                segments=[(0.0, 5.0, seg_vec)],
            )
        ]
    )
    deleted = store.delete_items([a["img0"], a["cap2"], res_seg.added["snd"], 10**9])
    assert deleted == {a["img0"]: "image", a["cap2"]: "text", res_seg.added["snd"]: "audio"}
    assert store.counts() == {"image": 2, "text": 3}
    assert store.vectors_for([a["img0"], a["cap2"]], DIM) == {}
    assert store.token_sets([a["img0"]]) == {}
    assert store.segments(res_seg.added["snd"], DIM) == []
    items = store.get_items([a["cap0"], a["cap1"], a["img1"]])
    assert items[a["cap0"]].linked == [] and items[a["cap1"]].linked == []
    assert items[a["img1"]].linked == []
    assert a["img0"] not in store.ids("image").tolist()
    assert store.delete_items([]) == {}


def test_segments_round_trip(store: Store) -> None:
    vecs = unit_rows(3, DIM)
    res = store.write_batch(
        [
            NewItem(
                key="long",
                modality="audio",
                content_hash="a",
                vector=vecs[0],
                duration=70.0,
                segments=[(0.0, 30.0, vecs[1]), (30.0, 30.0, vecs[2])],
            )
        ]
    )
    segs = store.segments(res.added["long"], DIM)
    assert [(o, d) for o, d, _ in segs] == [(0.0, 30.0), (30.0, 30.0)]
    np.testing.assert_array_equal(np.stack([v for _, _, v in segs]), vecs[1:])


@pytest.mark.parametrize("chunk", [1, 5, 17, 100])
def test_iter_vectors_chunks_in_id_order(store: Store, chunk: int) -> None:
    vecs = unit_rows(17, DIM)
    items = [_image(f"k{i:02d}", vecs[i]) for i in range(17)]
    items += [_text("t0", unit_rows(1, DIM, seed=3)[0], "other modality")]
    res = store.write_batch(items)
    parts = list(store.iter_vectors("image", DIM, chunk=chunk))
    assert [len(ids) for ids, _ in parts] == [min(chunk, 17 - i) for i in range(0, 17, chunk)]
    ids = np.concatenate([i for i, _ in parts])
    got = np.concatenate([v for _, v in parts])
    np.testing.assert_array_equal(ids, store.ids("image"))
    assert np.all(np.diff(ids) > 0)
    by_id = {res.added[f"k{i:02d}"]: vecs[i] for i in range(17)}
    np.testing.assert_array_equal(got, np.stack([by_id[int(i)] for i in ids]))
    assert list(store.iter_vectors("audio", DIM, chunk=chunk)) == []


def test_iter_items_pages_through_everything(store: Store) -> None:
    store.write_batch(_seven(unit_rows(7, DIM)), LINKS)
    keys = [r.key for r in store.iter_items(chunk=2)]
    assert sorted(keys) == sorted(["img0", "img1", "img2", "cap0", "cap1", "cap2", "cap3"])
    assert [r.key for r in store.iter_items("image", chunk=2)] == ["img0", "img1", "img2"]


def test_store_reopens_with_its_data(store: Store) -> None:
    store.write_batch(_seven(unit_rows(7, DIM)), LINKS)
    again = Store(store.url)
    try:
        assert again.counts() == {"image": 3, "text": 4}
        assert again.get_meta("schema_version") == "1"
    finally:
        again.close()


def test_error_record_is_the_latest_outcome_per_key(store: Store) -> None:
    vec = unit_rows(1, DIM)[0]
    store.write_batch([], errors=[("bad", "/x/bad.jpg", "truncated"), ("worse", None, "x")])
    store.write_batch([], errors=[("bad", "/x/bad.jpg", "truncated again")])
    assert store.error_count() == 2
    assert ("bad", "/x/bad.jpg", "truncated again") in store.errors()
    store.write_batch([_image("bad", vec)])  # the file was fixed and now indexes
    assert store.errors() == [("worse", None, "x")]
