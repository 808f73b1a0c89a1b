"""The foundation's must-show on the real starter models: all of coco_mini, through the CLI,
with v1 (`starter`, the bars it was written for) and the default (starter-v2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app

MANIFEST = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco_mini" / "items.jsonl"
)
pytestmark = pytest.mark.slow


# model (None: the default, starter-v2) -> how many of photo 790's own 5 captions its top 5 holds
# at least. v2 returns captions of other dining-table photos there (1 of its own), though it
# beats v1 on coco_mini's test split image-to-text R@1 (0.667 against 0.556): one photo's count.
OWN_CAPTIONS = {"starter": 3, None: 1}


@pytest.fixture(scope="module", params=["starter", None], ids=["v1", "default"])
def coco(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str | None]:
    """(catalogue of all coco_mini, the model it was built with; None: the default)."""
    if not MANIFEST.is_file():
        pytest.skip(f"real data missing: {MANIFEST} (see ../shared/data/README.md)")
    data_dir = tmp_path_factory.mktemp("coco") / "cat"
    model = ["--model", request.param] if request.param else []
    args = ["index", str(MANIFEST), "--data-dir", str(data_dir), "--json", *model]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["added"] == {"image": 239, "text": 1195}
    return data_dir, request.param


def test_every_photo_ranks_itself_first(coco: tuple[Path, str | None]) -> None:
    from retrieval.catalogue import Catalogue
    from retrieval.encoders import DEFAULT_MODEL, create_encoder
    from retrieval.media.image import decode_image
    from retrieval.search import Query, SearchService

    coco_dir, model = coco
    with Catalogue.open(coco_dir, create=False) as cat:
        service = SearchService(cat, create_encoder(model or DEFAULT_MODEL))
        images = list(cat.store.iter_items("image"))
        misses = [
            r.key
            for r in images
            if service.search(
                Query(image=decode_image(Path(r.path))), target="image", k=1, rerank=False
            )
            .hits[0]
            .id
            != r.id
        ]
    assert len(images) == 239 and misses == []


def test_cli_text_finds_images_and_image_finds_its_captions(coco: tuple[Path, str | None]) -> None:
    coco_dir, model = coco
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "search",
            "--text",
            "a man and his dog cross country skiing",
            "--target",
            "image",
            "-k",
            "3",
            "--json",
            "--data-dir",
            str(coco_dir),
        ],
    )
    assert out.exit_code == 0, out.output
    results = json.loads(out.stdout)["results"]
    assert {r["modality"] for r in results} == {"image"}
    assert results[0]["path"].endswith("000000030752.jpg")  # the photo with that caption

    photo = MANIFEST.parent / "images" / "000000000790.jpg"
    out = runner.invoke(
        app,
        [
            "search",
            "--image",
            str(photo),
            "--target",
            "text",
            "-k",
            "5",
            "--json",
            "--data-dir",
            str(coco_dir),
        ],
    )
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert body["query"] == {"image": str(photo)}
    texts = [r["text"] for r in body["results"]]
    own = json.loads(MANIFEST.read_text().splitlines()[0])["captions"]
    assert {r["modality"] for r in body["results"]} == {"text"}
    assert sum(t in own for t in texts) >= OWN_CAPTIONS[model], texts
