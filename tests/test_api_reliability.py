"""Issue 11, API side: duplicate captions, a busy or full catalogue, degraded readiness, media
served only from allowed roots, and the OpenAPI schema true to the runtime limits."""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_support import build_engine, coco_bytes, coco_entries, needs_coco, test_settings
from fastapi.testclient import TestClient
from PIL import Image

from api.main import create_app
from api.runtime import Runtime
from retrieval.errors import StorageFullError
from retrieval.limits import MAX_TEXT_CHARS
from retrieval.store import NewItem
from retrieval.write_lock import WriteLock

pytestmark = needs_coco


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    runtime, _ = build_engine(tmp_path_factory.mktemp("reliability"), n=3, n_audio=0)
    yield runtime
    runtime.close()


def _client(engine: Runtime, **overrides: Any) -> TestClient:
    settings = test_settings(engine.catalogue.data_dir, **overrides)
    return TestClient(create_app(settings, runtime=engine))


def _png(seed: int, size: int = 23) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _upload(client: TestClient, data: bytes, **form: Any) -> Any:
    return client.post("/v1/items", files={"file": ("x.png", data, "image/png")}, data=form)


# -- finding 5: repeated captions ------------------------------------------------------------------
def test_repeated_captions_are_stored_once_in_order(engine: Runtime) -> None:
    with _client(engine) as c:
        r = _upload(c, _png(5), captions=["same", "other", "same", " same "])
        assert r.status_code == 201, r.text
        texts = [c.get(f"/v1/items/{i}").json()["text"] for i in r.json()["linked"]]
    assert texts == ["same", "other"]


# -- finding 1: another writer holds the lock -------------------------------------------------------
def test_busy_catalogue_is_503_with_retry_after(engine: Runtime) -> None:
    other = WriteLock(engine.catalogue.data_dir)  # its own fd: conflicts like another process
    other.acquire()
    try:
        with _client(engine, write_lock_timeout_s=0.2) as c:
            r = _upload(c, _png(11))
            assert c.post("/v1/search", json={"text": "a dog"}).status_code == 200
    finally:
        other.release()
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "catalogue_busy"
    assert int(r.headers["Retry-After"]) >= 1
    with _client(engine, write_lock_timeout_s=0.2) as c:
        assert _upload(c, _png(11)).status_code == 201


# -- finding 7: full disk --------------------------------------------------------------------------
def _enospc(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_on_the_media_copy_is_507(
    engine: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = engine.catalogue.counts()
    monkeypatch.setattr("indexer.uploads.atomic_write_bytes", _enospc)
    with _client(engine) as c:
        r = _upload(c, _png(7), captions=["never stored"])
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "storage_full"
    assert "full" in r.json()["error"]["message"].lower()
    assert engine.catalogue.counts() == before


def test_full_disk_on_the_store_is_507(engine: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise StorageFullError("The disk holding the catalogue's database is full.")

    monkeypatch.setattr(engine.catalogue.store, "write_batch", full)
    with _client(engine) as c:
        r = _upload(c, _png(13))
        assert c.post("/v1/search", json={"text": "a dog"}).status_code == 200
    assert r.status_code == 507 and "full" in r.json()["error"]["message"]


def test_full_disk_on_an_index_save_is_507(
    engine: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine.catalogue, "flush", _enospc)
    with _client(engine) as c:
        r = _upload(c, _png(17))
    assert r.status_code == 507, r.text


def test_readyz_reports_a_degraded_catalogue(engine: Runtime) -> None:
    files = engine.catalogue.files
    with _client(engine) as c:
        assert c.get("/readyz").json()["status"] == "ready"
        files.degraded = "index repairs kept in memory: cannot save them (No space left on device)"
        try:
            r = c.get("/readyz")
            search = c.post("/v1/search", json={"text": "a dog"})
        finally:
            files.degraded = None
    assert r.status_code == 200
    assert r.json()["status"] == "degraded" and "No space left" in r.json()["reason"]
    assert search.status_code == 200


# -- finding 3b: media only from the data directory and media roots -----------------------------------
def _outside_item(engine: Runtime, path: Path) -> int:
    vector = np.ones(engine.encoder.dim, dtype=np.float32) / np.sqrt(engine.encoder.dim)
    item = NewItem(
        key=f"outside:{path.name}",
        modality="image",
        content_hash=path.name,
        vector=vector,
        path=str(path),
        mime="image/jpeg",
    )
    return engine.catalogue.write([item]).added[item.key]


def test_media_outside_the_allowed_roots_is_404(engine: Runtime, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(coco_bytes(coco_entries(1)[0]))
    item_id = _outside_item(engine, secret)
    with _client(engine) as c:
        r = c.get(f"/v1/items/{item_id}/media")
        assert r.status_code == 404 and r.content != secret.read_bytes()
    with _client(engine, media_roots=str(secret.parent)) as c:  # the operator allows the folder
        r = c.get(f"/v1/items/{item_id}/media")
        assert r.status_code == 200 and r.content == secret.read_bytes()


def test_media_roots_setting_parses_a_path_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROSSMEDIA_MEDIA_ROOTS", os.pathsep.join(["/srv/a", "/srv/b"]))
    assert test_settings(tmp_path).media_roots == [Path("/srv/a"), Path("/srv/b")]


def test_media_swapped_for_a_symlink_after_upload_is_404(engine: Runtime, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png(19))
    with _client(engine) as c:
        r = _upload(c, _png(23))
        item_id = r.json()["id"]
        stored = engine.catalogue.get_item(item_id)
        assert stored is not None and stored.path is not None
        Path(stored.path).unlink()
        Path(stored.path).symlink_to(secret)
        r = c.get(f"/v1/items/{item_id}/media")
    assert r.status_code == 404 and r.content != secret.read_bytes()


# -- finding 12: the schema says what the runtime enforces ---------------------------------------
@pytest.fixture(scope="module")
def openapi(engine: Runtime) -> dict[str, Any]:
    with _client(engine) as c:
        return c.get("/openapi.json").json()


def test_metrics_errors_are_documented_as_json(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/metrics"]["get"]["responses"]
    assert set(responses["401"]["content"]) == {"application/json"}
    assert set(responses["200"]["content"]) == {"text/plain"}


def test_405_allow_lists_every_method_of_the_path(engine: Runtime) -> None:
    with _client(engine) as c:
        r = c.options("/v1/items/1")
    assert r.status_code == 405
    allowed = {m.strip() for m in r.headers["Allow"].split(",")}
    assert {"GET", "DELETE"} <= allowed


def test_captions_sent_as_a_file_are_422(engine: Runtime) -> None:
    with _client(engine) as c:
        r = c.post(
            "/v1/items",
            files=[
                ("file", ("x.png", _png(29), "image/png")),
                ("captions", ("c.txt", b"a caption", "text/plain")),
            ],
        )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_captions"


def test_caption_length_limit_is_the_ingestion_limit(
    engine: Runtime, openapi: dict[str, Any]
) -> None:
    with _client(engine) as c:
        r = _upload(c, _png(31), captions=["x" * (MAX_TEXT_CHARS + 1)])
        assert r.status_code == 422 and r.json()["error"]["code"] == "caption_too_long"
        r = _upload(c, _png(31), captions=json.dumps(["y" * MAX_TEXT_CHARS]))
        assert r.status_code == 201, r.text
    form = openapi["paths"]["/v1/items"]["post"]["requestBody"]["content"]["multipart/form-data"]
    captions = form["schema"]["properties"]["captions"]
    assert captions["maxItems"] == 20 and captions["items"]["maxLength"] == MAX_TEXT_CHARS


def test_limits_are_in_the_schema(openapi: dict[str, Any]) -> None:
    params = openapi["paths"]["/v1/items/{item_id}/media"]["get"]["parameters"]
    thumb = next(p for p in params if p["name"] == "thumb")["schema"]
    thumb = next((s for s in thumb.get("anyOf", [thumb]) if s.get("type") == "integer"), thumb)
    assert (thumb["minimum"], thumb["maximum"]) == (16, 1024)
    search = openapi["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    form = search["multipart/form-data"]["schema"]
    assert form["maxProperties"] == 10
    assert sorted(tuple(s["required"]) for s in form["oneOf"]) == [
        ("audio",),
        ("image",),
        ("text",),
    ]
    assert form["properties"]["k"]["maximum"] == 100
    body = search["application/json"]["schema"]
    body = openapi["components"]["schemas"]["SearchRequest"] if "$ref" in body else body
    assert body["properties"]["text"]["maxLength"] == 2000
    assert body["properties"]["k"]["maximum"] == 100


def test_bad_filter_field_names_are_422_not_500(engine: Runtime) -> None:
    from api.errors import engine_error_status
    from retrieval.filters import FilterError

    assert engine_error_status(FilterError("Bad field name")) == (422, "invalid_filters")
    with _client(engine) as c:  # found by schemathesis: a 500 before
        r = c.post("/v1/search", json={"text": "cat", "filters": {"x-schemathesis": False}})
    assert r.status_code == 422, r.text
