"""Index files that scale with writes: a base file plus an append-only delta (retrieval/
index_files.py), checked against the store and against an index rebuilt from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import sqlite_url, unit_rows

import retrieval.index_files as index_files
from retrieval.catalogue import Catalogue
from retrieval.encoders.base import EmbeddingSpace
from retrieval.index import ExactIndex, FaissIndex
from retrieval.index_choice import build_for, upgrade_indexes
from retrieval.store import NewItem

DIM = 16
SPACE = EmbeddingSpace(model="synthetic", head_version="t", dim=DIM)


def _items(start: int, n: int, modality: str = "image") -> list[NewItem]:
    vecs = unit_rows(n, DIM, seed=start)
    return [
        NewItem(key=f"{modality}{start + i}", modality=modality, content_hash=f"h{start + i}",
                vector=vecs[i], text=f"thing {start + i}" if modality == "text" else None)
        for i in range(n)
    ]  # fmt: skip


def _open(data_dir: Path) -> Catalogue:
    cat = Catalogue.open(data_dir, db_url=sqlite_url(data_dir))
    cat.bind_space(SPACE)
    return cat


def _info(data_dir: Path, modality: str = "image") -> dict:
    return json.loads((data_dir / "index_info.json").read_text())["indexes"][modality]


def _assert_matches_store(cat: Catalogue, modality: str = "image") -> None:
    """Ids equal the store's, and search equals the exact oracle over the stored vectors."""
    index = cat.index(modality)
    want = cat.store.ids(modality)
    np.testing.assert_array_equal(index.ids(), want)
    oracle = ExactIndex(DIM)
    for ids, vecs in cat.store.iter_vectors(modality, DIM):
        oracle.add(ids, vecs)
    queries = unit_rows(7, DIM, seed=99)
    if isinstance(index, FaissIndex) and index.ivf_lists():
        index.set_search_params(nprobe=index.ivf_lists())
    got, exp = index.search(queries, 11), oracle.search(queries, 11)
    np.testing.assert_array_equal(got[1], exp[1])


def test_a_write_appends_to_the_delta_and_leaves_the_base_alone(tmp_path: Path) -> None:
    with _open(tmp_path) as cat:
        cat.write(_items(0, 17))
        base = tmp_path / "index" / "image.faiss"
        before = (base.stat().st_ino, base.stat().st_mtime_ns, _info(tmp_path)["sha256"])
        delta_before = _info(tmp_path)["delta_bytes"]
        cat.write(_items(100, 7))
        cat.delete_ids([int(cat.store.ids("image")[3])])
        after = (base.stat().st_ino, base.stat().st_mtime_ns, _info(tmp_path)["sha256"])
        assert after == before  # the base file was not rewritten
        assert _info(tmp_path)["delta_bytes"] > delta_before
        assert _info(tmp_path)["count"] == 23
    with _open(tmp_path) as cat:  # base + delta read back, in step with the store
        _assert_matches_store(cat)
        assert cat.repairs == []
        on_disk = cat.files.load_from_disk("image", DIM)
        np.testing.assert_array_equal(on_disk.ids(), cat.store.ids("image"))


def test_an_uncommitted_delta_tail_is_ignored_then_cut(tmp_path: Path) -> None:
    """Bytes past the recorded length are a write whose record never landed (a crash)."""
    with _open(tmp_path) as cat:
        cat.write(_items(0, 11))
        cat.write(_items(50, 5))
    delta = tmp_path / "index" / "image.delta"
    with delta.open("ab") as f:
        f.write(b"CMD1 half a record that never committed")
    with _open(tmp_path) as cat:
        _assert_matches_store(cat)
        assert cat.repairs == []
        cat.write(_items(80, 3))
        assert delta.stat().st_size == _info(tmp_path)["delta_bytes"]
    with _open(tmp_path) as cat:
        _assert_matches_store(cat)


def test_a_corrupt_delta_record_is_rebuilt_from_the_store(tmp_path: Path) -> None:
    with _open(tmp_path) as cat:
        cat.write(_items(0, 11))
        cat.write(_items(50, 5))
    delta = tmp_path / "index" / "image.delta"
    data = bytearray(delta.read_bytes())
    data[len(data) // 2] ^= 0xFF
    delta.write_bytes(bytes(data))
    with _open(tmp_path) as cat:
        _assert_matches_store(cat)
        assert any("delta unreadable" in note for note in cat.repairs), cat.repairs
    with _open(tmp_path) as cat:  # the rebuild was saved as a new base
        assert cat.index("image").count() == 16 and cat.repairs == []


def test_the_delta_merges_into_a_new_base_when_it_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_files, "MERGE_MIN_OPS", 10)
    with _open(tmp_path) as cat:
        cat.write(_items(0, 7))
        assert (_info(tmp_path)["delta_rows"], _info(tmp_path)["base_count"]) == (7, 0)
        cat.write(_items(20, 4))  # 11 rows in the delta: merged into a new base
        meta = _info(tmp_path)
        assert (meta["delta_bytes"], meta["delta_rows"], meta["base_count"]) == (0, 0, 11)
        cat.write(_items(40, 9))
        assert (_info(tmp_path)["delta_rows"], _info(tmp_path)["count"]) == (9, 20)
    with _open(tmp_path) as cat:
        _assert_matches_store(cat)


def test_a_reader_follows_another_writers_delta_without_reloading(tmp_path: Path) -> None:
    with _open(tmp_path) as writer:
        writer.write(_items(0, 11))
        with _open(tmp_path) as reader:
            seen = reader.index("image")
            writer.write(_items(60, 6))
            assert reader.index("image") is seen  # caught up in place, not reloaded
            np.testing.assert_array_equal(seen.ids(), writer.store.ids("image"))
            writer.save_index("image", writer.index("image"))  # a new base: reload
            assert reader.index("image") is not seen
            _assert_matches_store(reader)


@pytest.mark.parametrize("factory", ["IVF4,Flat", "IVF4,SQ8"])
def test_ivf_removes_in_place_and_records_it_in_the_delta(tmp_path: Path, factory: str) -> None:
    with _open(tmp_path) as cat:
        cat.set_default_factory(factory)
        cat.write(_items(0, 60))
        upgrade_indexes(cat)
        assert cat.index("image").factory == factory
        sha = _info(tmp_path)["sha256"]
        doomed = [int(i) for i in cat.store.ids("image")[::7]]
        cat.delete_ids(doomed)
        cat.write(_items(300, 5))
        assert _info(tmp_path)["sha256"] == sha and _info(tmp_path)["delta_rows"] == len(doomed) + 5
    with _open(tmp_path) as cat:
        if factory.endswith("Flat"):
            _assert_matches_store(cat)
        np.testing.assert_array_equal(cat.index("image").ids(), cat.store.ids("image"))
        assert cat.repairs == []


def test_automatic_choice_moves_to_ivf_with_a_tuned_nprobe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retrieval.index as index_mod
    import retrieval.index_choice as choice

    monkeypatch.setattr(index_mod, "EXACT_BELOW", 300)
    monkeypatch.setattr(choice, "EXACT_BELOW", 300)
    with _open(tmp_path) as cat:
        cat.write(_items(0, 299))
        assert upgrade_indexes(cat) == [] and cat.index("image").factory == "Flat"
        cat.write(_items(1000, 40) + _items(0, 30, "text"))
        assert upgrade_indexes(cat) == ["image"]
        search = _info(tmp_path)["search"]
        # the captions' vectors tuned the image index's knob too (cross-modal queries)
        assert search["cross_modal_queries"] == 30 and search["cross_modal_recall_at_10"] >= 0.95
        assert cat.index("image").factory.startswith("IVF")
        assert search["exact"] is False and search["queries"] > 0
        assert search["recall_at_10"] >= 0.95 and search["met"] is True
        assert search["sweep"][-1][:2] == [search["nprobe"], search["recall_at_10"]]
    with _open(tmp_path) as cat:  # the knob was saved with the index
        index = cat.index("image")
        assert isinstance(index, FaissIndex)
        _, ids = index.search(unit_rows(3, DIM, seed=5), 5)
        assert (ids >= 0).all()


def test_an_index_built_from_a_snapshot_catches_up_when_installed(tmp_path: Path) -> None:
    """The background rebuild: rows written while the new index was being built are in it."""
    with _open(tmp_path) as cat:
        cat.write(_items(0, 40))
        new, tuning = build_for(cat, "image", "IVF4,Flat")
        cat.write(_items(500, 6))
        cat.delete_ids([int(cat.store.ids("image")[0])])
        cat.save_index("image", new, tuning)
        assert cat.index("image") is new
        _assert_matches_store(cat)
    with _open(tmp_path) as cat:
        assert cat.index("image").factory == "IVF4,Flat"
        _assert_matches_store(cat)


@pytest.mark.parametrize(
    ("factory", "knob"),
    [("Flat", None), ("SQfp16", None), ("IVF8,Flat", "nprobe"), ("HNSW16", "ef_search")],
)
def test_every_index_type_records_the_recall_it_was_measured_to_give(
    factory: str, knob: str | None
) -> None:
    from retrieval.index_build import build_from_arrays

    vecs = unit_rows(997, DIM, seed=3)
    _, tuning = build_from_arrays(factory, DIM, np.arange(1, 998), vecs)
    assert tuning["exact"] is (factory == "Flat")
    assert tuning["recall_at_10"] >= 0.95
    if knob:
        assert tuning[knob] == tuning["sweep"][-1][0] and tuning["met"] is True


@pytest.mark.parametrize("factory", ["IVF4,Flat", "IVF4,SQ8"])
def test_a_mapped_ivf_base_searches_then_copies_its_lists_on_the_first_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str
) -> None:
    """Base files past FULL_HASH_BELOW are memory-mapped (retrieval/index/faiss_mmap.py); here
    every base is. Writing to mapped lists would abort the process, so writes, removals and
    saves must copy them first, then behave as on an index read into memory."""
    monkeypatch.setattr(index_files, "FULL_HASH_BELOW", 0)
    with _open(tmp_path) as cat:
        cat.set_default_factory(factory)
        cat.write(_items(0, 60))
        upgrade_indexes(cat)
    with _open(tmp_path) as cat:
        index = cat.index("image")
        assert isinstance(index, FaissIndex) and index._mapped
        read = FaissIndex.load(cat.files.path("image"), DIM, factory)
        queries = unit_rows(7, DIM, seed=5)
        for i in (index, read):
            i.set_search_params(nprobe=4)
        np.testing.assert_array_equal(index.search(queries, 9)[1], read.search(queries, 9)[1])
        cat.delete_ids([int(i) for i in cat.store.ids("image")[::5]])
        cat.write(_items(400, 7))
        assert not index._mapped and cat.index("image") is index
        cat.save_index("image", index)  # a new base over the file it was mapped from
    with _open(tmp_path) as cat:
        assert cat.repairs == [] and cat.index("image")._mapped  # type: ignore[attr-defined]
        np.testing.assert_array_equal(cat.index("image").ids(), cat.store.ids("image"))
        if factory.endswith("Flat"):
            _assert_matches_store(cat)


def test_a_base_that_cannot_be_mapped_is_read_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without mmap must not turn every open into a rebuild."""
    import faiss

    monkeypatch.setattr(index_files, "FULL_HASH_BELOW", 0)
    with _open(tmp_path) as cat:
        cat.set_default_factory("IVF4,Flat")
        cat.write(_items(0, 60))
        upgrade_indexes(cat)
    real = faiss.read_index

    def no_mmap(path: str, flags: int = 0) -> object:
        if flags:
            raise RuntimeError("Error in mmap: operation not supported")
        return real(path, flags)

    monkeypatch.setattr(faiss, "read_index", no_mmap)
    with _open(tmp_path) as cat:
        index = cat.index("image")
        assert cat.repairs == [] and not index._mapped  # type: ignore[attr-defined]
        _assert_matches_store(cat)
