"""Catalogue care over HTTP (issue 17): `/metrics` and `/v1/stats` carry the last `crossmedia
eval`; the search field `collapse` keeps one hit per duplicate group."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from api_support import build_engine, coco_bytes, needs_coco, test_settings
from fastapi.testclient import TestClient
from PIL import Image

from api.main import create_app
from indexer.uploads import add_upload
from retrieval.live_eval import LAST_EVAL, run_eval, save_last_eval

pytestmark = needs_coco


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    engine, entries = build_engine(tmp_path_factory.mktemp("care-api"), n=7, n_audio=0)
    first = entries[0]
    png = io.BytesIO()
    Image.open(io.BytesIO(coco_bytes(first))).convert("RGB").save(png, "PNG")
    original = engine.catalogue.get_item(first["item_id"]).key
    copy = add_upload(engine.ingestor, png.getvalue(), "copy.png", attrs={"duplicate_of": original})
    app = create_app(test_settings(engine.catalogue.data_dir), runtime=engine)
    with TestClient(app) as client:
        yield engine, entries, client, copy.id


def test_metrics_and_stats_show_the_last_eval(world: Any) -> None:
    engine, _, client, _ = world
    data_dir = Path(engine.catalogue.data_dir)
    (data_dir / LAST_EVAL).unlink(missing_ok=True)
    assert "crossmedia_eval_recall" not in client.get("/metrics").text
    assert client.get("/v1/stats").json()["info"]["last_eval"] is None

    result = run_eval(engine.catalogue, engine.search, sample=50)
    result["at"] = "2026-12-01T10:00:00Z"
    save_last_eval(data_dir, result)
    text = client.get("/metrics").text
    r1 = result["tasks"]["text_to_image"]["first_stage"]["R@1"]
    line = re.search(
        r'crossmedia_eval_recall\{task="text_to_image",stage="first_stage",k="1"\} ([0-9.]+)', text
    )
    assert line and float(line.group(1)) == pytest.approx(r1, abs=1e-6)
    assert 'crossmedia_eval_gallery{task="text_to_image"} 8' in text  # 7 photos + the copy
    assert "crossmedia_eval_timestamp_seconds 1796119200" in text
    assert client.get("/v1/stats").json()["info"]["last_eval"]["tasks"] == result["tasks"]


def test_collapse_keeps_one_hit_per_duplicate_group(world: Any) -> None:
    _, entries, client, copy_id = world
    body = {"text": entries[0]["captions"][0], "target": "image", "k": 8, "mode": "vector"}
    plain = [h["id"] for h in client.post("/v1/search", json=body).json()["results"]]
    collapsed = client.post("/v1/search", json={**body, "collapse": True}).json()["results"]
    ids = [h["id"] for h in collapsed]
    assert copy_id in plain and entries[0]["item_id"] in plain
    assert len({copy_id, entries[0]["item_id"]} & set(ids)) == 1
    assert len(ids) == 7  # every other photo still there
