"""The lexical channel on SQLite (FTS5) and PostgreSQL (tsvector): one contract. Entries live
and die with their items, in the same transaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retrieval.store import NewItem, Store
from retrieval.store.lexical import body_of, query_words


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        f"sqlite:///{tmp_path / 'c.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_fresh_url")
    )
    s = Store(url)
    try:
        yield s
    finally:
        s.close()


def _item(
    key: str,
    modality: str,
    text: str | None = None,
    path: str | None = None,
    h: str = "h",
    **attrs: object,
) -> NewItem:
    return NewItem(
        key=key,
        modality=modality,
        content_hash=h,
        vector=np.ones(4, np.float32),
        text=text,
        path=path,
        attrs=dict(attrs),
    )


ITEMS = [
    _item("c1", "text", "Two people riding horses on a beach."),
    _item("c2", "text", "A dog runs on the beach."),
    _item("c3", "text", "A plate of food with broccoli."),
    _item("a1", "audio", "horses galloping", path="/sounds/hooves.wav"),
    _item("i1", "image", None, path="/photos/red_bicycle-2019.jpg", label="bicycle"),
]


def _ids(store: Store) -> dict[str, int]:
    return {r.key: r.id for r in store.iter_items()}


def test_ranking_contract(store: Store) -> None:
    store.write_batch(ITEMS)
    ids = _ids(store)
    hits = store.lexical_search("two people riding horses on a beach", 10)
    assert hits[0][0] == ids["c1"]  # the caption sharing the most (and rarest) words first
    assert {i for i, _ in hits} >= {ids["c1"], ids["c2"], ids["a1"]}  # any word matches
    assert all(s > 0 for _, s in hits) and [s for _, s in hits] == sorted(
        (s for _, s in hits), reverse=True
    )
    assert ids["c3"] not in {i for i, _ in hits}
    assert [i for i, _ in store.lexical_search("horses", 10, modalities=["audio"])] == [ids["a1"]]
    assert [i for i, _ in store.lexical_search("bicycle red", 10)] == [ids["i1"]]  # name + attrs
    assert store.lexical_search("horses", 10, ids=[ids["c2"]]) == []


def test_hostile_queries_are_just_words(store: Store) -> None:
    store.write_batch(ITEMS)
    for q in ['beach" OR *', "NEAR(beach dog)", "beach & | ! ( ) :", "'; DROP TABLE items; --"]:
        store.lexical_search(q, 5)  # never a syntax error
    assert store.lexical_search("!!! ???", 5) == []
    assert query_words("Beach, beach & DOGS!") == ["beach", "dogs"]


def test_entries_follow_their_items(store: Store) -> None:
    store.write_batch(ITEMS)
    ids = _ids(store)
    store.delete_items([ids["c2"]])
    assert ids["c2"] not in {i for i, _ in store.lexical_search("dog beach", 10)}
    store.write_batch([_item("c1", "text", "A cat asleep on a sofa.", h="h2")])  # replaced
    new_id = _ids(store)["c1"]
    assert [i for i, _ in store.lexical_search("sofa", 10)] == [new_id]
    assert store.lexical_search("people riding", 10) == []  # the old caption's words are gone
    with store.engine.connect() as conn:
        assert store.lexical.ids(conn) == sorted(i for i in _ids(store).values())


def test_fields_exclude_names_and_attrs_when_asked() -> None:
    assert body_of("image", None, "/a/frog_green.jpg", {"label": "frog"}, ("text",)) == ""
    assert "frog green" in body_of("image", None, "/a/frog_green.jpg", {}, ("text", "name"))
    assert body_of("text", "A frog.", None, {"caption_of": "x"}) == "A frog."


def test_older_catalogue_is_backfilled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    Store(url).write_batch(ITEMS)
    import sqlite3

    with sqlite3.connect(tmp_path / "c.db") as con:  # as if made before the lexical channel
        con.execute("DROP TRIGGER items_lexical_delete")
        con.execute("DROP TABLE lexical")
    store = Store(url)
    assert len(store.lexical_search("beach horses dog", 10)) == 3
    store.close()
