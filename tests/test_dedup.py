"""Near-duplicates (issue 17): the index-based grouping equals the all-pairs oracle; exact copies
group by content hash; ingestion marks copies (`attrs.duplicate_of`) and search collapses them
(CLI `--collapse-duplicates`, API `collapse`)."""

from __future__ import annotations

import io
import json
import shutil
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import coco_entries
from PIL import Image
from typer.testing import CliRunner

from api.cli import app
from retrieval.catalogue import Catalogue
from retrieval.dedup import (
    CANDIDATE_COSINE,
    UnionFind,
    collapse,
    find_duplicates,
    group_pairs,
    pairs_within,
)
from retrieval.errors import CrossmediaError
from retrieval.fingerprint import pixel_similarity, views_of_file
from retrieval.results import Hit
from retrieval.store.dup_reads import hash_groups, paths_of


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, tiny_encoder: Any) -> None:
    import retrieval.encoders as encoders

    monkeypatch.delenv("CROSSMEDIA_DB_URL", raising=False)
    real = encoders.create_encoder
    monkeypatch.setattr(
        encoders,
        "create_encoder",
        lambda name="starter", device=None: tiny_encoder if name == "tiny-test" else real(name),
    )


def cli(*args: Any) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args] + ["--json"], catch_exceptions=True)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


# The tiny test model maps every photo close to every other: pixels tell the copies.
MARK = ("--mark-duplicates",)


def oracle_groups(ids: np.ndarray, vecs: np.ndarray, same: Any) -> list[list[int]]:
    """All pairs, no index: the connected components of the pairs `same(i, j)` holds for."""
    uf = UnionFind()
    for i, j in combinations(range(len(ids)), 2):
        if same(i, j):
            uf.union(int(ids[i]), int(ids[j]))
    return uf.groups()


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
def test_text_grouping_equals_the_all_pairs_oracle(tiny_catalogue: Any, threshold: float) -> None:
    """Text is decided on vectors: the index's k-NN in odd batches finds every pair."""
    cat = tiny_catalogue
    ids, vecs = next(cat.store.iter_vectors("text", cat.space.dim, chunk=10_000))
    found = find_duplicates(cat, "text", vector_threshold=threshold, batch=7)
    want = oracle_groups(ids, vecs, lambda i, j: vecs[i] @ vecs[j] >= threshold)
    # Exact copies (equal hashes) join too: COCO has repeated captions.
    hashed = hash_groups(cat.store, "text")
    want = [g.ids for g in group_pairs("text", [(a, b, 1.0) for a, b in _pairs(want)], hashed, 0)]
    assert [g.ids for g in found] == want
    assert len(want) > 0 if threshold == 0.5 else True


@pytest.mark.parametrize("threshold", [0.3, 0.6, 0.9])
def test_image_grouping_equals_the_all_pairs_oracle(tiny_catalogue: Any, threshold: float) -> None:
    """Images: vector candidates (cosine >= CANDIDATE_COSINE) confirmed on pixels; with k above
    the catalogue's size the index proposes every pair, so the result is the oracle's."""
    cat = tiny_catalogue
    ids, vecs = next(cat.store.iter_vectors("image", cat.space.dim, chunk=10_000))
    paths = paths_of(cat.store, ids.tolist())
    views = [views_of_file(paths[int(i)]) for i in ids]
    found = find_duplicates(cat, "image", threshold, batch=5, k=len(ids) + 1)

    def copy(i: int, j: int) -> bool:
        return vecs[i] @ vecs[j] >= CANDIDATE_COSINE and (
            pixel_similarity(views[i], views[j]) >= threshold
        )

    assert [g.ids for g in found] == oracle_groups(ids, vecs, copy)
    assert found if threshold == 0.3 else True  # at 0.3 some different photos correlate


def _pairs(groups: list[list[int]]) -> list[tuple[int, int]]:
    return [p for g in groups for p in combinations(g, 2)]


def test_union_find_chains_and_within_batch_pairs() -> None:
    pairs = [(1, 2, 0.99), (2, 3, 0.97), (5, 6, 0.5), (8, 9, 0.96)]
    groups = group_pairs("image", pairs, [[9, 12]], threshold=0.95)
    assert [g.ids for g in groups] == [[1, 2, 3], [8, 9, 12]]
    assert groups[0].min_score == pytest.approx(0.97) and not groups[0].exact
    v = np.eye(4, dtype=np.float32)
    v[3] = v[1]
    assert pairs_within(v, 0.9) == [(1, 3)]
    with pytest.raises(CrossmediaError, match="cosine"):
        find_duplicates(None, "image", 1.5)  # type: ignore[arg-type]


def test_mark_on_ingestion_then_collapse_and_list(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    entries = coco_entries(5)
    for e in entries:
        shutil.copy(e["image"], photos / Path(e["image"]).name)
    first = Path(entries[0]["image"])
    shutil.copy(first, photos / "zz-exact-copy.jpg")  # byte-identical
    buf = io.BytesIO()
    Image.open(first).convert("RGB").save(buf, "PNG")  # same pixels, other bytes
    (photos / "zz-png-copy.png").write_bytes(buf.getvalue())
    data_dir = tmp_path / "data"
    cli("index", photos, "--data-dir", data_dir, "--model", "tiny-test", *MARK)

    with Catalogue.open(data_dir, create=False) as cat:
        recs = {Path(r.key).name: r for r in cat.store.iter_items("image")}
    original = str(photos / first.name)
    assert recs["zz-exact-copy.jpg"].attrs["duplicate_of"] == original
    assert recs["zz-png-copy.png"].attrs["duplicate_of"] == original
    assert all("duplicate_of" not in recs[Path(e["image"]).name].attrs for e in entries)

    groups = cli("dedup", "--data-dir", data_dir)["groups"]
    assert [sorted(Path(k).name for k in g["keys"]) for g in groups] == [
        sorted([first.name, "zz-exact-copy.jpg", "zz-png-copy.png"])
    ]

    query = ["search", "--image", first, "--target", "image", "-k", "5", "--data-dir", data_dir]
    plain = [Path(h["path"]).name for h in cli(*query)["results"]]
    collapsed = [Path(h["path"]).name for h in cli(*query, "--collapse-duplicates")["results"]]
    assert {"zz-exact-copy.jpg", "zz-png-copy.png"} & set(plain)
    assert not {"zz-exact-copy.jpg", "zz-png-copy.png"} & set(collapsed)
    assert len(collapsed) == 5 and first.name in collapsed


def test_collapse_keeps_the_best_of_each_group() -> None:
    hits = [
        Hit(id=1, modality="image", score=0.9, key="a"),
        Hit(id=2, modality="image", score=0.8, key="b", attrs={"duplicate_of": "a"}),
        Hit(id=3, modality="image", score=0.7, key="c", attrs={"duplicate_of": "d"}),
        Hit(id=4, modality="image", score=0.6, key="d"),
        Hit(id=5, modality="image", score=0.5, key="e"),
    ]
    assert [h.id for h in collapse(hits, 10)] == [1, 3, 5]
    assert [h.id for h in collapse(hits, 2)] == [1, 3]
