"""FAISS indexes against the exact NumPy oracle, on seeded data of small and odd sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import seeded_rng, unit_rows

from retrieval.index import ExactIndex, FaissIndex, VectorIndex, auto_factory, create_index


def _ids(n: int, seed: int = 1) -> np.ndarray:
    """Distinct, non-contiguous, unsorted int64 database ids (some beyond 32 bits)."""
    return seeded_rng(seed).choice(2**40, size=n, replace=False).astype(np.int64)


def _pair(
    factory: str, n: int, dim: int, seed: int = 0
) -> tuple[VectorIndex, ExactIndex, np.ndarray]:
    ids, vecs = _ids(n, seed + 1), unit_rows(n, dim, seed)
    fast = create_index(factory, dim)
    if fast.needs_training:
        fast.train(vecs)
    fast.add(ids, vecs)
    exact = ExactIndex(dim)
    exact.add(ids, vecs)
    return fast, exact, ids


def _assert_same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    (sa, ia), (sb, ib) = a, b
    np.testing.assert_array_equal(ia, ib)
    finite = np.isfinite(sb)
    np.testing.assert_array_equal(np.isfinite(sa), finite)
    np.testing.assert_allclose(sa[finite], sb[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim", [8, 33])
@pytest.mark.parametrize("n", [7, 11, 17, 257])
def test_flat_equals_exact(n: int, dim: int) -> None:
    fast, exact, _ = _pair("Flat", n, dim)
    queries = unit_rows(13, dim, seed=99)
    for k in (1, 5, n + 4):
        _assert_same(fast.search(queries, k), exact.search(queries, k))


def test_exact_oracle_is_brute_force() -> None:
    """The oracle itself, checked against a plain argsort of all inner products."""
    vecs, ids = unit_rows(17, 8), _ids(17)
    exact = ExactIndex(8)
    exact.add(ids, vecs)
    q = unit_rows(5, 8, seed=3)
    scores, got = exact.search(q, 4)
    sims = q @ vecs.T
    order = np.argsort(-sims, axis=1)[:, :4]
    np.testing.assert_array_equal(got, ids[order])
    np.testing.assert_allclose(scores, np.take_along_axis(sims, order, axis=1), rtol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)


@pytest.mark.parametrize("factory", ["Flat", "exact"])
def test_k_larger_than_n_pads_with_minus_one(factory: str) -> None:
    index, _, ids = _pair(factory, 7, 8)
    scores, got = index.search(unit_rows(3, 8, seed=5), 11)
    assert got.shape == scores.shape == (3, 11)
    assert got.dtype == np.int64 and scores.dtype == np.float32
    assert np.all(got[:, 7:] == -1) and np.all(np.isneginf(scores[:, 7:]))
    for row in got:
        assert sorted(row[:7].tolist()) == sorted(ids.tolist())


@pytest.mark.parametrize("factory", ["Flat", "exact", "HNSW8"])
def test_empty_index_returns_only_padding(factory: str) -> None:
    index = create_index(factory, 8)
    scores, ids = index.search(unit_rows(2, 8), 3)
    assert ids.shape == (2, 3) and np.all(ids == -1) and np.all(np.isneginf(scores))
    assert index.count() == 0 and index.ids().size == 0


@pytest.mark.parametrize("dim", [8, 33])
def test_ivf_with_all_lists_probed_equals_exact(dim: int) -> None:
    fast, exact, _ = _pair("IVF4,Flat", 257, dim)
    assert isinstance(fast, FaissIndex)
    fast.set_search_params(nprobe=4)
    queries = unit_rows(17, dim, seed=7)
    for k in (1, 5, 300):
        _assert_same(fast.search(queries, k), exact.search(queries, k))


def test_ivf_nprobe_is_applied() -> None:
    """nprobe=1 must visit fewer lists than nprobe=nlist, or the knob does nothing."""
    fast, exact, _ = _pair("IVF4,Flat", 257, 33)
    assert isinstance(fast, FaissIndex)
    queries = unit_rows(17, 33, seed=7)
    _, want = exact.search(queries, 10)
    fast.set_search_params(nprobe=1)
    _, got1 = fast.search(queries, 10)
    fast.set_search_params(nprobe=4)
    _, got4 = fast.search(queries, 10)
    np.testing.assert_array_equal(got4, want)
    assert not np.array_equal(got1, want)


def _recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def test_hnsw_recall_at_10_against_exact() -> None:
    fast, exact, _ = _pair("HNSW16", 1000, 33)
    assert isinstance(fast, FaissIndex)
    fast.set_search_params(ef_search=64)
    queries = unit_rows(101, 33, seed=11)
    _, want = exact.search(queries, 10)
    scores, got = fast.search(queries, 10)
    assert _recall(got, want) >= 0.95
    # Whatever HNSW returns, its scores are the true inner products of those ids.
    all_scores, all_ids = exact.search(queries, 1000)
    for q, row in enumerate(got):
        true = dict(zip(all_ids[q].tolist(), all_scores[q].tolist(), strict=True))
        np.testing.assert_allclose(scores[q], [true[int(i)] for i in row], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factory", ["Flat", "exact"])
def test_remove_then_search_equals_exact_without_them(factory: str) -> None:
    fast, _, ids = _pair(factory, 257, 8)
    gone = ids[::3]
    absent = np.array([-5, 2**41], dtype=np.int64)
    assert fast.remove(np.concatenate([gone, absent])) == len(gone)
    keep = np.setdiff1d(np.arange(257), np.arange(257)[::3])
    oracle = ExactIndex(8)
    oracle.add(ids[keep], unit_rows(257, 8)[keep])
    assert fast.count() == len(keep)
    np.testing.assert_array_equal(fast.ids(), np.sort(ids[keep]))
    queries = unit_rows(11, 8, seed=4)
    _assert_same(fast.search(queries, 300), oracle.search(queries, 300))
    assert not np.isin(fast.search(queries, 300)[1], gone).any()


@pytest.mark.parametrize("factory", ["IVF4,Flat", "IVF8,SQ8"])
def test_ivf_keeps_its_own_ids_and_removes_in_place(factory: str) -> None:
    """An IVF index holds the database ids in its lists (no ID map), so removal is exact: with
    every list probed, it answers as the oracle over what is left."""
    fast, _, ids = _pair(factory, 257, 8)
    assert isinstance(fast, FaissIndex)
    lists = fast.ivf_lists()
    assert lists is not None
    fast.set_search_params(nprobe=lists)
    gone = ids[::3]
    assert fast.remove(gone) == len(gone)
    keep = np.setdiff1d(np.arange(257), np.arange(257)[::3])
    np.testing.assert_array_equal(fast.ids(), np.sort(ids[keep]))
    oracle = ExactIndex(8)
    oracle.add(ids[keep], fast.reconstruct(ids[keep]))
    queries = unit_rows(11, 8, seed=4)
    _assert_same(fast.search(queries, 20), oracle.search(queries, 20))
    np.testing.assert_allclose(
        fast.reconstruct(ids[keep][:5]), unit_rows(257, 8)[keep][:5], atol=0.02
    )


@pytest.mark.parametrize("factory", ["IDMap2,IVF4,Flat", "HNSW8"])
def test_remove_is_refused_where_faiss_would_return_wrong_ids(factory: str) -> None:
    """An ID map over IVF (catalogues saved before IVF kept its own ids) would remap labels
    wrongly after removal, and HNSW cannot remove: the index refuses, untouched, and the
    catalogue rebuilds instead."""
    fast, exact, ids = _pair(factory, 257, 8)
    assert isinstance(fast, FaissIndex)
    fast.set_search_params(nprobe=4, ef_search=300)
    with pytest.raises(NotImplementedError, match="rebuild"):
        fast.remove(ids[::3])
    assert fast.count() == 257
    queries = unit_rows(11, 8, seed=4)
    _assert_same(fast.search(queries, 5), exact.search(queries, 5))


@pytest.mark.parametrize("factory", ["Flat", "exact", "IVF4,Flat", "HNSW8"])
def test_save_load_round_trip(tmp_path: Path, factory: str) -> None:
    index, _, ids = _pair(factory, 257, 33)
    path = tmp_path / "index.bin"
    index.save(path)
    loaded = type(index).load(path, 33, factory)
    assert loaded.count() == 257
    np.testing.assert_array_equal(loaded.ids(), np.sort(ids))
    queries = unit_rows(7, 33, seed=8)
    for obj in (index, loaded):
        if isinstance(obj, FaissIndex):
            obj.set_search_params(nprobe=4, ef_search=32)
    _assert_same(loaded.search(queries, 10), index.search(queries, 10))


def test_faiss_bytes_round_trip_checks_dim() -> None:
    index, _, _ = _pair("Flat", 11, 8)
    assert isinstance(index, FaissIndex)
    data = index.to_bytes()
    again = FaissIndex.from_bytes(data, 8, "Flat")
    _assert_same(again.search(unit_rows(3, 8), 5), index.search(unit_rows(3, 8), 5))
    with pytest.raises(ValueError, match="dim 8, expected 33"):
        FaissIndex.from_bytes(data, 33, "Flat")


@pytest.mark.parametrize("factory", ["Flat", "exact", "HNSW8"])
def test_ids_lists_exactly_what_was_added(factory: str) -> None:
    index = create_index(factory, 8)
    ids = _ids(17)
    vecs = unit_rows(17, 8)
    index.add(ids[:7], vecs[:7])
    index.add(ids[7:], vecs[7:])
    got = index.ids()
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.sort(ids))
    assert index.count() == 17


@pytest.mark.parametrize("bad", ["NoSuchIndex", "IVF,Flat", "HNSWx"])
def test_bad_factory_string_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match="Bad FAISS factory string"):
        create_index(bad, 8)


@pytest.mark.parametrize("factory", ["Flat", "exact"])
def test_shape_errors(factory: str) -> None:
    index = create_index(factory, 8)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        index.add(_ids(3), unit_rows(3, 9))
    with pytest.raises(ValueError, match="3 ids for 2 vectors"):
        index.add(_ids(3), unit_rows(2, 8))


def test_exact_refuses_duplicate_ids() -> None:
    index = ExactIndex(8)
    index.add(np.array([1, 2]), unit_rows(2, 8))
    with pytest.raises(ValueError, match="Duplicate"):
        index.add(np.array([2]), unit_rows(1, 8))


def test_untrained_ivf_refuses_add() -> None:
    index = create_index("IVF4,Flat", 8)
    assert index.needs_training
    with pytest.raises(RuntimeError, match="must be trained"):
        index.add(_ids(7), unit_rows(7, 8))


def test_create_index_and_auto_factory() -> None:
    assert isinstance(create_index("exact", 8), ExactIndex)
    flat = create_index("Flat", 8)
    assert isinstance(flat, FaissIndex) and flat.factory == "Flat" and flat.dim == 8
    assert auto_factory(49_999) == "Flat"
    assert auto_factory(50_000) == "IVF512,Flat"
    assert auto_factory(1_000_000) == "IVF2048,Flat"
    assert auto_factory(4_000_000) == "IVF4096_HNSW32,Flat"
    assert auto_factory(1_000_000, 256, memory_bytes=1 << 30) == "IVF2048,SQ8"
    for n in (50_000, 1_000_000, 4_000_000):
        create_index(auto_factory(n), 256)  # every automatic choice is a valid factory string
