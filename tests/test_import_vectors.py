"""`crossmedia import-vectors`: vectors computed elsewhere, checked, stored in bulk, indexed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import sqlite_url, unit_rows
from typer.testing import CliRunner

from api.cli import app
from indexer.import_vectors import import_vectors
from retrieval.catalogue import Catalogue
from retrieval.encoders import create_encoder
from retrieval.encoders.spaces import space_of
from retrieval.errors import CatalogueError, SpaceMismatchError
from retrieval.index import ExactIndex

DIM = 32  # the tiny-test model's space


def _files(
    tmp: Path, n: int, *, dim: int = DIM, seed: int = 0, extra: Any = None
) -> tuple[Path, Path]:
    vecs = unit_rows(n, dim, seed) * 3.0  # not unit length: normalised on import
    np.save(tmp / "vectors.npy", vecs)
    lines = [{"id": f"item-{i}"} for i in range(n)]
    lines[1].update(text="a red bicycle", attrs={"album": "summer"})
    lines[2].update(path="photos/two.jpg", captions=["two dogs on a beach", "dogs playing"])
    for i, obj in (extra or {}).items():
        lines[i] = obj
    (tmp / "items.jsonl").write_text("".join(json.dumps(o) + "\n" for o in lines))
    return tmp / "vectors.npy", tmp / "items.jsonl"


def _run(tmp: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        [
            "import-vectors",
            *args,
            "--model",
            "tiny-test",
            "--data-dir",
            str(tmp / "data"),
            "--json",
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def _assert_index_answers_as_exact(cat: Catalogue, seed: int, k: int) -> dict[int, np.ndarray]:
    """The image index holds the store's ids and answers as the exact oracle over the stored
    vectors; returns those vectors by id."""
    ids = cat.store.ids("image")
    np.testing.assert_array_equal(cat.index("image").ids(), ids)
    stored = cat.store.vectors_for(ids.tolist(), DIM)
    oracle = ExactIndex(DIM)
    oracle.add(ids, np.stack([stored[int(i)] for i in ids]))
    q = unit_rows(5, DIM, seed=seed)
    np.testing.assert_array_equal(cat.index("image").search(q, k)[1], oracle.search(q, k)[1])
    return stored


def test_import_stores_indexes_and_is_idempotent(tmp_path: Path) -> None:
    vecs, manifest = _files(tmp_path, 37)
    report = _run(tmp_path, str(vecs), "--manifest", str(manifest))
    assert (report["rows"], report["added"], report["captions"]) == (37, 37, 2)
    assert report["renormalised"] == 37
    assert report["index"]["image"]["count"] == 37 and report["index"]["text"]["count"] == 2
    again = _run(tmp_path, str(vecs), "--manifest", str(manifest))
    assert (again["added"], again["unchanged"], again["replaced"]) == (0, 37, 0)
    changed = np.load(vecs)
    changed[5] = unit_rows(1, DIM, seed=77)[0]
    np.save(vecs, changed)
    third = _run(tmp_path, str(vecs), "--manifest", str(manifest))
    assert (third["added"], third["unchanged"], third["replaced"]) == (0, 36, 1)
    with Catalogue.open(tmp_path / "data", db_url=sqlite_url(tmp_path / "data")) as cat:
        assert cat.counts() == {"image": 37, "text": 2}
        stored = _assert_index_answers_as_exact(cat, seed=3, k=7)
        item = cat.store.get_by_key("item-5")
        assert item is not None
        np.testing.assert_allclose(
            stored[item.id], changed[5] / np.linalg.norm(changed[5]), atol=1e-6
        )
        two = cat.store.get_by_key("item-2")
        assert two is not None and len(two.linked) == 2  # its captions, linked
        hits = cat.store.lexical_search("bicycle", 5)
        assert [cat.store.get_item(i).key for i, _ in hits] == ["item-1"]  # type: ignore[union-attr]


def test_a_first_import_builds_its_index_alongside_the_writes(tmp_path: Path) -> None:
    """No captions and an empty catalogue: the index is built from the file while the rows are
    written, with the ids they will get; it must equal what the store holds."""
    vecs, manifest = _files(tmp_path, 57, extra={2: {"id": "item-2", "path": "photos/two.jpg"}})
    report = _run(tmp_path, str(vecs), "--manifest", str(manifest))
    assert (report["added"], report["captions"]) == (57, 0)
    with Catalogue.open(tmp_path / "data", db_url=sqlite_url(tmp_path / "data")) as cat:
        _assert_index_answers_as_exact(cat, seed=4, k=9)
        assert cat.repairs == []


def _item_indexes(data_dir: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(data_dir / "catalogue.db") as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='items'")
        return {name for (name,) in rows if not name.startswith("sqlite_")}


def test_a_first_import_defers_the_secondary_indexes_and_an_open_restores_lost_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Into an empty catalogue the items table's secondary indexes are dropped, then built once
    after the rows (retrieval/store/bulk.py). A crash in between leaves them missing: the next
    open builds them again."""
    from retrieval.store import bulk

    seen: list[set[str]] = []
    real = bulk.bulk_insert
    monkeypatch.setattr(
        "indexer.import_vectors.bulk_insert",
        lambda store, *a, **k: (seen.append(_item_indexes(tmp_path / "data")), real(store, *a, **k))[1],
    )  # fmt: skip
    vecs, manifest = _files(tmp_path, 23, extra={2: {"id": "item-2"}})
    _run(tmp_path, str(vecs), "--manifest", str(manifest))
    assert seen == [set()]  # written with them dropped
    assert _item_indexes(tmp_path / "data") == set(bulk.DEFERRED)
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "catalogue.db") as db:  # as a crash would leave it
        db.execute("DROP INDEX ix_items_content_hash")
    with Catalogue.open(tmp_path / "data", db_url=sqlite_url(tmp_path / "data")) as cat:
        assert _item_indexes(tmp_path / "data") == set(bulk.DEFERRED)
        assert cat.repairs == [] and cat.counts() == {"image": 23}
    seen.clear()
    _run(tmp_path, str(vecs), "--manifest", str(manifest))  # not empty now: kept
    assert seen == [set(bulk.DEFERRED)]


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "dimension": ({"dim": 48}, "48 dimensions; the model's space has 32"),
    "count": ({"drop_line": True}, "items for 11 vector rows"),
    "json": ({"raw": "{not json"}, r"items.jsonl:4: not valid JSON"),
    "no id": ({"line": {"path": "x.jpg"}}, r'items.jsonl:4: each line needs an "id"'),
    "duplicate": ({"line": {"id": "item-0"}}, "id 'item-0' appears twice"),
    "nan": ({"nan": True}, "vector row 6 holds NaN"),
    "nan late": ({"nan": 70_000}, "vector row 70001 holds NaN"),
    "captions": ({"line": {"id": "c", "captions": "one"}}, '"captions" must be a list'),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_before_anything_is_stored(tmp_path: Path, case: str) -> None:
    spec, message = BAD[case]
    vecs, manifest = _files(tmp_path, 11, dim=spec.get("dim", DIM))
    lines = manifest.read_text().splitlines()
    if spec.get("drop_line"):
        lines = lines[:-1]
    if "raw" in spec:
        lines[3] = spec["raw"]
    if "line" in spec:
        lines[3] = json.dumps(spec["line"])
    manifest.write_text("\n".join(lines) + "\n")
    if spec.get("nan"):  # in the first batch, or in a later one: nothing is written either way
        at = 5 if spec["nan"] is True else spec["nan"]
        rows = np.load(vecs)
        rows = (
            np.concatenate([rows, unit_rows(at + 1 - len(rows), DIM)]) if at >= len(rows) else rows
        )
        rows[at, 2] = np.nan
        np.save(vecs, rows)
        manifest.write_text("".join(json.dumps({"id": f"r{i}"}) + "\n" for i in range(len(rows))))
    space = create_encoder("tiny-test").space
    with Catalogue.open(tmp_path / "data", db_url=sqlite_url(tmp_path / "data")) as cat:
        cat.lock_for_writing()
        with pytest.raises(CatalogueError, match=message):
            import_vectors(cat, vecs, manifest, space, progress=False)
        assert cat.counts() == {}


def test_vectors_of_another_space_are_refused(tmp_path: Path) -> None:
    vecs, manifest = _files(tmp_path, 11)
    _run(tmp_path, str(vecs), "--manifest", str(manifest))
    starter = space_of("starter")
    assert starter is not None and starter.dim == 256
    with Catalogue.open(tmp_path / "data", db_url=sqlite_url(tmp_path / "data")) as cat:
        cat.lock_for_writing()
        with pytest.raises(SpaceMismatchError, match="re-index|Re-index|re-embed"):
            import_vectors(cat, vecs, manifest, starter, progress=False)


@pytest.mark.postgres
def test_import_into_postgresql_then_ordinary_writes(tmp_path: Path, pg_fresh_url: str) -> None:
    """The bulk path's own SQL on PostgreSQL: JSON attrs, links, the lexical entries, and the id
    sequence moved past the ids it assigned (a later ordinary write must not collide)."""
    from retrieval.store import NewItem

    vecs, manifest = _files(tmp_path, 23)
    space = create_encoder("tiny-test").space
    with Catalogue.open(tmp_path / "data", db_url=pg_fresh_url) as cat:
        cat.lock_for_writing()
        report = import_vectors(
            cat, vecs, manifest, space, text_encoder=lambda: create_encoder("tiny-test"),
            progress=False,
        )  # fmt: skip
        assert (report.added, report.captions) == (23, 2)
        one = cat.store.get_by_key("item-1")
        assert one is not None and one.attrs == {"album": "summer"}
        assert [i for i, _ in cat.store.lexical_search("bicycle", 5)] == [one.id]
        cat.write([NewItem(key="later", modality="image", content_hash="x",
                           vector=unit_rows(1, DIM, seed=9)[0])])  # fmt: skip
        assert cat.counts() == {"image": 24, "text": 2}
        np.testing.assert_array_equal(cat.index("image").ids(), cat.store.ids("image"))
