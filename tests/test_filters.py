"""Filters in the engine against the exact oracle: random catalogues of odd sizes, filters from
about 1% to 90% selectivity, the same top k as brute force over the items that pass (SQLite and
PostgreSQL); and the CLI's filter syntax."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.catalogue import Catalogue
from retrieval.encoders.base import EmbeddingSpace
from retrieval.filters import FilterError, parse_where
from retrieval.index import ExactIndex
from retrieval.search import SearchService, filtered_search
from retrieval.store import NewItem

DIM = 16
LABELS = ["cat", "dog", "bird", "cow", "lion"]


class _Encoder:
    space = EmbeddingSpace("filter-test", "v", DIM)
    dim = DIM


def _catalogue(
    url: str, data_dir: Path, n: int, seed: int
) -> tuple[Catalogue, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    cat = Catalogue.open(data_dir, db_url=url)
    cat.bind_space(_Encoder.space)
    rows, items = [], []
    for i in range(n):
        attrs = {
            "label": LABELS[int(rng.integers(len(LABELS)))],
            "score": float(rng.uniform(0, 100)),
        }
        rows.append({"vec": vecs[i], "duration": float(rng.uniform(0, 20)), **attrs})
        items.append(
            NewItem(
                key=f"k{i}",
                modality="audio",
                content_hash=f"h{i}",
                vector=vecs[i],
                duration=rows[-1]["duration"],
                attrs=attrs,
                path=f"/x/{i}.wav",
            )
        )
    cat.write(items)
    return cat, rows


FILTERS = [  # (filter, python predicate), from very selective to broad
    ({"score": {"<": 1.0}}, lambda r: r["score"] < 1.0),
    ({"label": "cat", "score": {">=": 80}}, lambda r: r["label"] == "cat" and r["score"] >= 80),
    ({"label": {"in": ["cat", "dog"]}}, lambda r: r["label"] in ("cat", "dog")),
    ({"duration": {">=": 2, "<": 19}}, lambda r: 2 <= r["duration"] < 19),
    (
        {"label": {"!=": "lion"}, "score": {">": 5}},
        lambda r: r["label"] != "lion" and r["score"] > 5,
    ),
]


def _check_against_oracle(cat: Catalogue, rows: list[dict[str, Any]], seed: int) -> list[float]:
    service = SearchService(cat, _Encoder())  # type: ignore[arg-type]
    ids = cat.store.ids("audio")
    rng = np.random.default_rng(seed + 1)
    queries = rng.normal(size=(7, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    shares = []
    for where, pred in FILTERS:
        allowed = np.array([i for i, r in zip(ids, rows, strict=True) if pred(r)], np.int64)
        shares.append(len(allowed) / len(rows))
        oracle = ExactIndex(DIM)
        oracle.add(ids, np.stack([r["vec"] for r in rows]))
        _, want = oracle.search(queries, 10, among=allowed)
        got = service.search_vectors(queries, target="audio", k=10, filters=where)
        for q in range(len(queries)):
            assert [i for i, _, _ in got[q]] == [int(i) for i in want[q] if i >= 0], (where, q)
    return shares


@pytest.mark.parametrize("n", [7, 113, 1009])
def test_filtered_top_k_equals_the_oracle_sqlite(tmp_path: Path, n: int) -> None:
    cat, rows = _catalogue(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "d", n, seed=n)
    try:
        shares = _check_against_oracle(cat, rows, seed=n)
    finally:
        cat.close()
    if n == 1009:  # the filters span selective (pre-filter) to broad (post-filter)
        assert min(shares) < 0.02 and max(shares) > 0.85, shares


@pytest.mark.postgres
@pytest.mark.parametrize("n", [11, 409])
def test_filtered_top_k_equals_the_oracle_postgres(
    pg_fresh_url: str, tmp_path: Path, n: int
) -> None:
    cat, rows = _catalogue(pg_fresh_url, tmp_path / "d", n, seed=n)
    try:
        _check_against_oracle(cat, rows, seed=n)
    finally:
        cat.close()


def test_both_filter_paths_are_used(tmp_path: Path) -> None:
    """The selective filter goes through the ID selector, the broad one through over-fetch;
    both give the oracle's answer (a test of the seam itself, with a counting index)."""
    calls: list[bool] = []

    class Counting(ExactIndex):
        def search(self, q, k, among=None):  # noqa: ANN001, ANN201
            calls.append(among is not None)
            return super().search(q, k, among)

    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(101, DIM)).astype(np.float32)
    index = Counting(DIM)
    index.add(np.arange(101), vecs)
    filtered_search(index, vecs[:3], 5, np.arange(0, 101, 50))  # 3 of 101: pre-filter
    filtered_search(index, vecs[:3], 5, np.arange(0, 101))  # all: post-filter
    assert calls[0] is True and calls[-1] is False


def test_cli_filter_syntax() -> None:
    assert parse_where(["label in cat,dog", "duration>=2", "duration<10.5", "mime=image/png"]) == {
        "label": {"in": ["cat", "dog"]},
        "duration": {">=": 2, "<": 10.5},
        "mime": {"=": "image/png"},
    }
    with pytest.raises(FilterError, match="FIELD=VALUE"):
        parse_where(["just words"])


def test_true_false_filters(tmp_path: Path) -> None:
    """Found by the API fuzzer: {"flag": false} was a 500 (SQL compares truth values with IS)."""
    from retrieval.filters import compile_filter

    cat = Catalogue.open(tmp_path / "d", db_url=f"sqlite:///{tmp_path / 'c.db'}")
    try:
        cat.bind_space(_Encoder.space)
        vec = np.ones(DIM, np.float32) / np.sqrt(DIM)
        cat.write(
            [
                NewItem(
                    key=f"k{i}",
                    modality="audio",
                    content_hash=f"h{i}",
                    vector=vec,
                    attrs={"flag": i % 2 == 0},
                )
                for i in range(5)
            ]
        )
        on = cat.store.filter_ids(compile_filter({"flag": True}), "audio")
        off = cat.store.filter_ids(compile_filter({"flag": {"!=": True}}), "audio")
        assert len(on) == 3 and len(off) == 2
        with pytest.raises(FilterError, match="true/false"):
            compile_filter({"flag": {">": False}})
    finally:
        cat.close()
