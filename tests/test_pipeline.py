"""Ingestion end to end on real COCO photos with the tiny encoder: bad files are reported and
skipped, re-runs add nothing, changed files are replaced, and index and store always agree."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CAPTIONS, N_GOOD, build_scenario, coco_entries, sqlite_url, write_manifest
from PIL import Image

from indexer.pipeline import Ingestor
from indexer.rows import IngestReport
from indexer.sources import ManifestSource
from retrieval.catalogue import Catalogue
from retrieval.catalogue_check import describe
from retrieval.errors import CatalogueError, SpaceMismatchError
from retrieval.media.image import decode_image
from retrieval.search import Query, SearchService
from tests.conftest import SHARED_DATA


def ingest(data_dir: Path, manifest: Path, encoder: Any, batch_size: int = 8) -> IngestReport:
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir)) as cat:
        return Ingestor(cat, encoder, batch_size=batch_size).ingest(
            ManifestSource(manifest, [SHARED_DATA]), progress=False
        )


def open_cat(data_dir: Path) -> Catalogue:
    return Catalogue.open(data_dir, db_url=sqlite_url(data_dir), create=False)


def assert_index_matches_store(data_dir: Path) -> None:
    """In memory, and from the files on disk, each index holds exactly the store's ids."""
    with open_cat(data_dir) as cat:
        for modality in ("image", "text", "audio"):
            want = cat.store.ids(modality)
            np.testing.assert_array_equal(cat.index(modality).ids(), want)
            if len(want):  # the base file plus its committed delta
                on_disk = cat.files.load_from_disk(modality, cat.space.dim)  # type: ignore[union-attr]
                np.testing.assert_array_equal(on_disk.ids(), want)
        assert cat.repairs == []


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pipeline")
    manifest, good = build_scenario(root)
    data_dir = root / "data"
    report = ingest(data_dir, manifest, tiny_encoder)
    return {
        "root": root,
        "manifest": manifest,
        "good": good,
        "data_dir": data_dir,
        "report": report,
    }


@pytest.fixture
def scenario_copy(scenario: dict[str, Any], tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(scenario["data_dir"], data_dir)
    return data_dir


def test_only_good_items_are_catalogued(scenario: dict[str, Any]) -> None:
    report, good = scenario["report"], scenario["good"]
    assert report.entries == N_GOOD + 4
    assert report.added == {"image": N_GOOD, "text": N_GOOD * CAPTIONS}
    assert (report.unchanged, report.replaced) == (0, 0)
    with open_cat(scenario["data_dir"]) as cat:
        assert cat.counts() == {"image": N_GOOD, "text": N_GOOD * CAPTIONS}
        images = list(cat.store.iter_items("image"))
        assert sorted(r.key for r in images) == sorted(e["id"] for e in good)
        for key in ("corrupt", "trunc", "missing", "corrupt#caption0", "trunc#caption0"):
            assert cat.store.get_by_key(key) is None


def test_each_failure_has_a_specific_reason(scenario: dict[str, Any]) -> None:
    failed = dict(scenario["report"].failed)
    assert sorted(failed) == [f"items.jsonl:{n}" for n in (16, 17, 18, 19)]
    assert (
        "UnsupportedMediaError" in failed["items.jsonl:16"]
        and "corrupt.jpg" in failed["items.jsonl:16"]
    )
    assert "truncat" in failed["items.jsonl:17"].lower() and "trunc.jpg" in failed["items.jsonl:17"]
    assert "No such file" in failed["items.jsonl:18"] and "missing.jpg" in failed["items.jsonl:18"]
    assert failed["items.jsonl:19"].startswith("invalid JSON")
    with open_cat(scenario["data_dir"]) as cat:
        assert cat.store.error_count() == 4
        assert {where for _, where, _ in cat.store.errors()} == set(failed)
        info = describe(cat)
    assert info["skipped_files"] == 4
    assert info["counts"] == {"image": N_GOOD, "text": N_GOOD * CAPTIONS}
    assert info["indexes"]["image"]["count"] == N_GOOD
    assert info["space"] == {"model": "tiny-test", "head_version": "seed0", "dim": 32}
    report_json = json.loads(json.dumps(scenario["report"].to_json()))
    assert len(report_json["failed"]) == 4 and set(report_json["failed"][0]) == {"where", "reason"}


def test_item_rows_describe_their_files(scenario: dict[str, Any]) -> None:
    good = {e["id"]: e for e in scenario["good"]}
    with open_cat(scenario["data_dir"]) as cat:
        for rec in cat.store.iter_items("image"):
            path = Path(good[rec.key]["image"])
            data = path.read_bytes()
            assert rec.path == str(path)
            assert rec.content_hash == hashlib.sha256(data).hexdigest()
            assert rec.size_bytes == len(data) and rec.mime == "image/jpeg"
            assert (rec.width, rec.height) == Image.open(path).size
            caps = cat.store.get_items(rec.linked)
            assert sorted(c.text for c in caps.values()) == sorted(good[rec.key]["captions"])
            assert all(c.linked == [rec.id] for c in caps.values())


def test_index_and_store_agree(scenario: dict[str, Any]) -> None:
    assert_index_matches_store(scenario["data_dir"])


def test_every_image_finds_itself_first(scenario: dict[str, Any], tiny_encoder: Any) -> None:
    with open_cat(scenario["data_dir"]) as cat:
        service = SearchService(cat, tiny_encoder)
        images = list(cat.store.iter_items("image"))
        queries = [Query(image=decode_image(Path(r.path))) for r in images]  # type: ignore[arg-type]
        results = service.search_many(queries, target="image", k=3)
        for rec, res in zip(images, results, strict=True):
            assert res.hits[0].id == rec.id
            assert res.hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert res.hits[1].score < res.hits[0].score - 1e-4
            assert [h.modality for h in res.hits] == ["image"] * 3


def test_caption_query_returns_that_caption(scenario: dict[str, Any], tiny_encoder: Any) -> None:
    with open_cat(scenario["data_dir"]) as cat:
        service = SearchService(cat, tiny_encoder)
        caption = scenario["good"][6]["captions"][2]
        res = service.search(Query(text=caption), target="text", k=5, mode="vector")
        assert res.hits[0].text == caption and res.hits[0].modality == "text"
        assert res.hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert all(h.modality == "text" and h.text for h in res.hits)
        hybrid = service.search(Query(text=caption), target="text", k=5)  # the default: words
        assert hybrid.hits[0].text == caption  # both channels put it first


def test_rerun_adds_nothing(
    scenario: dict[str, Any], scenario_copy: Path, tiny_encoder: Any
) -> None:
    report = ingest(scenario_copy, scenario["manifest"], tiny_encoder, batch_size=7)
    assert report.added == {} and report.replaced == 0
    assert report.unchanged == N_GOOD * (1 + CAPTIONS)
    assert len(report.failed) == 4
    with open_cat(scenario_copy) as cat:
        assert cat.counts() == {"image": N_GOOD, "text": N_GOOD * CAPTIONS}
        # The same four bad files are still four skipped files, not eight.
        assert cat.store.error_count() == 4
    assert_index_matches_store(scenario_copy)


def test_second_manifest_is_added_incrementally(
    scenario: dict[str, Any], scenario_copy: Path, tiny_encoder: Any, tmp_path: Path
) -> None:
    more = coco_entries(3, skip=N_GOOD + 1) + scenario["good"][:2]
    report = ingest(scenario_copy, write_manifest(tmp_path / "more.jsonl", more), tiny_encoder)
    assert report.added == {"image": 3, "text": 3 * CAPTIONS}
    assert report.unchanged == 2 * (1 + CAPTIONS) and not report.failed
    with open_cat(scenario_copy) as cat:
        assert cat.counts() == {"image": N_GOOD + 3, "text": (N_GOOD + 3) * CAPTIONS}
        assert cat.store.error_count() == 4
    assert_index_matches_store(scenario_copy)


def test_changed_file_is_replaced_and_searchable(tmp_path: Path, tiny_encoder: Any) -> None:
    photos = coco_entries(3) + coco_entries(1, skip=30)
    for e in photos[:3]:
        shutil.copy(e["image"], tmp_path / f"{e['id']}.jpg")
        e["image"] = f"{e['id']}.jpg"
    manifest = write_manifest(tmp_path / "items.jsonl", photos[:3])
    data_dir = tmp_path / "data"
    ingest(data_dir, manifest, tiny_encoder)
    target = photos[1]
    with open_cat(data_dir) as cat:
        old = cat.store.get_by_key(target["id"])
    assert old is not None

    shutil.copy(photos[3]["image"], tmp_path / target["image"])  # same key, new content
    report = ingest(data_dir, manifest, tiny_encoder)
    assert report.replaced == 1 and report.added == {"image": 1}
    assert report.unchanged == 2 + 3 * CAPTIONS
    with open_cat(data_dir) as cat:
        new = cat.store.get_by_key(target["id"])
        assert new is not None and new.id != old.id
        assert (
            new.content_hash
            == hashlib.sha256((tmp_path / target["image"]).read_bytes()).hexdigest()
        )
        assert cat.get_item(old.id) is None
        assert old.id not in cat.index("image").ids()
        assert sorted(new.linked) == sorted(old.linked)  # captions kept and re-linked
        assert cat.counts() == {"image": 3, "text": 3 * CAPTIONS}
        res = SearchService(cat, tiny_encoder).search(
            Query(image=decode_image(tmp_path / target["image"])), target="image", k=3
        )
        assert res.hits[0].id == new.id and res.hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert old.id not in [h.id for h in res.hits]
    assert_index_matches_store(data_dir)


def test_fixed_file_clears_its_error(
    scenario: dict[str, Any], tmp_path: Path, tiny_encoder: Any
) -> None:
    photo = coco_entries(1)[0]
    (tmp_path / "p.jpg").write_bytes(Path(photo["image"]).read_bytes()[:2000])
    manifest = write_manifest(tmp_path / "items.jsonl", [{"id": "p", "image": "p.jpg"}])
    data_dir = tmp_path / "data"
    assert len(ingest(data_dir, manifest, tiny_encoder).failed) == 1
    shutil.copy(photo["image"], tmp_path / "p.jpg")
    report = ingest(data_dir, manifest, tiny_encoder)
    assert report.added == {"image": 1} and not report.failed
    with open_cat(data_dir) as cat:
        assert cat.store.error_count() == 0


def test_other_model_is_refused(scenario_copy: Path, tiny_encoder: Any) -> None:
    from dataclasses import replace

    class Other:
        space = replace(tiny_encoder.space, model="another-model")

    with open_cat(scenario_copy) as cat, pytest.raises(SpaceMismatchError, match="another-model"):
        Ingestor(cat, Other())  # type: ignore[arg-type]


def test_one_writer_per_data_dir(
    scenario: dict[str, Any], scenario_copy: Path, tiny_encoder: Any
) -> None:
    with open_cat(scenario_copy) as first, open_cat(scenario_copy) as second:
        first.lock_for_writing()
        with pytest.raises(CatalogueError, match="Another process is writing"):
            Ingestor(second, tiny_encoder).ingest(
                ManifestSource(scenario["manifest"], [SHARED_DATA]), progress=False
            )
        first.unlock()


@pytest.mark.parametrize("batch_size", [7, 1])  # duplicates in one batch, and across batches
def test_duplicate_ids_first_wins(tmp_path: Path, tiny_encoder: Any, batch_size: int) -> None:
    photos = coco_entries(3)
    rows: list[dict[str, Any] | str] = [photos[0], photos[1], dict(photos[2], id=photos[0]["id"])]
    manifest = write_manifest(tmp_path / "items.jsonl", rows)
    data_dir = tmp_path / "data"
    for run in range(2):
        report = ingest(data_dir, manifest, tiny_encoder, batch_size=batch_size)
        assert report.failed == [
            ("items.jsonl:3", f"duplicate id {photos[0]['id']!r}: already used at items.jsonl:1")
        ]
        assert report.replaced == 0
        assert report.added == ({"image": 2, "text": 2 * CAPTIONS} if run == 0 else {})
    with open_cat(data_dir) as cat:
        first = cat.store.get_by_key(photos[0]["id"])
        assert first is not None and first.path == photos[0]["image"]
        assert cat.counts() == {"image": 2, "text": 2 * CAPTIONS}
        assert cat.store.error_count() == 1
    assert_index_matches_store(data_dir)


def test_folder_source_end_to_end(tmp_path: Path, tiny_encoder: Any) -> None:
    """Content, not names: a JPEG called .dat is indexed, a text file called .jpg is not; an
    EXIF-rotated photo is stored with its upright size."""
    from indexer.sources import FolderSource

    photos = coco_entries(2)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(photos[0]["image"], folder / "sub" / "first.dat")
    im = Image.open(photos[1]["image"])
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(folder / "rotated.jpg", exif=exif.tobytes(), quality=90)
    (folder / "fake.jpg").write_text("not a photo")
    (folder / "note.txt").write_text("a note", encoding="utf-8")
    (folder / ".hidden.jpg").write_bytes((folder / "rotated.jpg").read_bytes())
    data_dir = tmp_path / "data"
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir)) as cat:
        report = Ingestor(cat, tiny_encoder).ingest(FolderSource(folder), progress=False)
        assert report.added == {"image": 2, "text": 1}
        assert report.failed == [("fake.jpg", "named .jpg but the content is text, not an image")]
        rotated = cat.store.get_by_key(str(folder / "rotated.jpg"))
        assert rotated is not None and (rotated.width, rotated.height) == (im.height, im.width)
        assert rotated.attrs == {"file": "rotated.jpg"}
        first = cat.store.get_by_key(str(folder / "sub" / "first.dat"))
        assert first is not None and first.mime == "image/jpeg"
        note = cat.store.get_by_key(str(folder / "note.txt"))
        assert note is not None and note.text == "a note" and note.modality == "text"
    assert_index_matches_store(data_dir)


def test_limits_are_reported_per_file(tmp_path: Path, tiny_encoder: Any) -> None:
    from retrieval.media.decode import MediaLimits
    from retrieval.media.image import ImageLimits

    photos = coco_entries(3)
    sizes = [Path(p["image"]).stat().st_size for p in photos]
    pixels = [Image.open(p["image"]).size for p in photos]
    # First a byte limit just below the largest file, then a pixel limit below every photo.
    big = max(range(3), key=lambda i: sizes[i])
    limit_px = min(w * h for w, h in pixels) - 1
    manifest = write_manifest(tmp_path / "items.jsonl", photos)
    data_dir = tmp_path / "data"
    limits = MediaLimits(image=ImageLimits(max_bytes=sizes[big] - 1, max_pixels=10**9))
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir)) as cat:
        report = Ingestor(cat, tiny_encoder, limits=limits).ingest(
            ManifestSource(manifest, [SHARED_DATA]), progress=False
        )
    assert report.added == {"image": 2, "text": 2 * CAPTIONS}
    assert report.failed == [
        (
            f"items.jsonl:{big + 1}",
            f"{Path(photos[big]['image']).name}: file is larger than the image "
            f"limit of {sizes[big] - 1} bytes; raise CROSSMEDIA_MAX_IMAGE_BYTES to index it",
        )
    ]
    limits = MediaLimits(image=ImageLimits(max_pixels=limit_px))
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir)) as cat:
        report = Ingestor(cat, tiny_encoder, limits=limits).ingest(
            ManifestSource(manifest, [SHARED_DATA]), progress=False
        )
    # The two stored photos are unchanged (not decoded again); the third is now refused by pixels.
    assert report.unchanged == 2 * (1 + CAPTIONS) and report.added == {}
    assert len(report.failed) == 1 and "MediaTooLargeError" in report.failed[0][1]
    assert report.failed[0][0] == f"items.jsonl:{big + 1}" and "pixels" in report.failed[0][1]


@pytest.mark.postgres
def test_ingest_into_a_postgresql_store(
    tmp_path: Path, tiny_encoder: Any, pg_fresh_url: str
) -> None:
    photos = coco_entries(7)
    manifest = write_manifest(tmp_path / "items.jsonl", [*photos, '{"id": "broken"'])
    data_dir = tmp_path / "data"
    for run in range(2):
        with Catalogue.open(data_dir, db_url=pg_fresh_url) as cat:
            report = Ingestor(cat, tiny_encoder, batch_size=3).ingest(
                ManifestSource(manifest, [SHARED_DATA]), progress=False
            )
        assert report.added == ({"image": 7, "text": 7 * CAPTIONS} if run == 0 else {})
        assert [w for w, _ in report.failed] == ["items.jsonl:8"]
    with Catalogue.open(data_dir, db_url=pg_fresh_url, create=False) as cat:
        assert cat.store.engine.dialect.name == "postgresql"
        assert cat.counts() == {"image": 7, "text": 7 * CAPTIONS}
        assert cat.store.error_count() == 1
        for modality in ("image", "text"):
            np.testing.assert_array_equal(cat.index(modality).ids(), cat.store.ids(modality))
        images = list(cat.store.iter_items("image"))
        queries = [Query(image=decode_image(Path(r.path))) for r in images]  # type: ignore[arg-type]
        results = SearchService(cat, tiny_encoder).search_many(queries, target="image", k=1)
        assert [r.hits[0].id for r in results] == [r.id for r in images]
        assert cat.repairs == []


@pytest.mark.parametrize("factory,expect", [("IVF2,Flat", "IVF2,Flat"), ("IVF1024,Flat", "Flat")])
def test_trained_index_type_on_a_new_catalogue(
    tmp_path: Path, tiny_encoder: Any, factory: str, expect: str
) -> None:
    """A new catalogue has nothing to train an IVF index on when its first batch arrives; after
    the run it has the asked-for type (or stays exact while there are fewer vectors than lists)."""
    photos = coco_entries(11)
    manifest = write_manifest(tmp_path / "items.jsonl", photos)
    data_dir = tmp_path / "data"
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir)) as cat:
        cat.set_default_factory(factory)
        Ingestor(cat, tiny_encoder, batch_size=4).ingest(
            ManifestSource(manifest, [SHARED_DATA]), progress=False
        )
    with open_cat(data_dir) as cat:
        assert {m: cat.index(m).factory for m in ("image", "text")} == {
            "image": expect,
            "text": expect,
        }
        assert describe(cat)["indexes"]["image"]["factory"] == expect
        images = list(cat.store.iter_items("image"))
        queries = [Query(image=decode_image(Path(r.path))) for r in images]  # type: ignore[arg-type]
        results = SearchService(cat, tiny_encoder).search_many(queries, target="image", k=1)
        assert [r.hits[0].id for r in results] == [r.id for r in images]
        assert cat.repairs == []
    assert_index_matches_store(data_dir)


def test_captions_removed_from_an_entry_are_removed_from_the_catalogue(
    tmp_path, tiny_encoder
) -> None:
    import json as _json

    from indexer.pipeline import Ingestor
    from indexer.sources import open_source
    from retrieval.catalogue import Catalogue
    from tests.conftest import require_shared_data

    photo = require_shared_data() / "coco_mini" / "images" / "000000000790.jpg"
    manifest = tmp_path / "items.jsonl"
    caps = ["one cake", "two cakes", "three cakes", "a table", "people"]
    with Catalogue.open(tmp_path / "cat") as cat:
        ing = Ingestor(cat, tiny_encoder)
        manifest.write_text(_json.dumps({"id": "p", "image": str(photo), "captions": caps}) + "\n")
        ing.ingest(open_source(manifest, [SHARED_DATA]), progress=False)
        assert cat.counts()["text"] == 5
        manifest.write_text(
            _json.dumps({"id": "p", "image": str(photo), "captions": caps[:2]}) + "\n"
        )
        report = ing.ingest(open_source(manifest, [SHARED_DATA]), progress=False)
        assert report.removed_captions == 3 and report.added == {}
        assert cat.counts()["text"] == 2
        assert sorted(r.text for r in cat.store.iter_items("text")) == ["one cake", "two cakes"]
        assert list(cat.index("text").ids()) == list(cat.store.ids("text"))
        [image] = list(cat.store.iter_items("image"))
        assert len(image.linked) == 2
