"""Every endpoint through the real library: tiny-test encoder, a catalogue of real COCO photos."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from api_support import COCO, FSDD, coco_bytes, needs_coco, shared_engine, test_settings
from fastapi.testclient import TestClient
from PIL import Image

from api.main import create_app
from api.runtime import Runtime

pytestmark = needs_coco


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runtime, list[dict[str, Any]]]:
    return shared_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def client(world: tuple[Runtime, list[dict[str, Any]]]) -> TestClient:
    engine, _ = world
    app = create_app(test_settings(engine.catalogue.data_dir), runtime=engine)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def entries(world: tuple[Runtime, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return world[1]


def test_health_and_ready(client: TestClient, entries: list[dict[str, Any]]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["counts"]["image"] >= len(entries)


def test_lifespan_loads_the_engine_from_settings(tmp_path: Path) -> None:
    app = create_app(test_settings(tmp_path / "fresh"))
    assert app.state.runtime is None
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        assert app.state.runtime is not None
        assert app.state.runtime.catalogue.data_dir == (tmp_path / "fresh").resolve()
    assert app.state.runtime is None  # closed and dropped on shutdown


def test_stats_hides_server_paths(client: TestClient, entries: list[dict[str, Any]]) -> None:
    body = client.get("/v1/stats").json()
    assert body["counts"]["image"] >= len(entries)
    assert body["counts"]["text"] >= 2 * len(entries)
    assert body["model"] == "tiny-test"
    assert body["reranker"] is False  # none ships for the tiny test model
    assert body["limits"]["max_k"] == 100
    assert "data_dir" not in body["info"] and "db" not in body["info"]
    assert str(Path("/tmp")) not in str(body)


def test_text_search_ranks_exact_caption_first(
    client: TestClient, entries: list[dict[str, Any]]
) -> None:
    caption = entries[3]["captions"][0]
    r = client.post(
        "/v1/search", json={"text": caption, "target": "text", "k": 5, "mode": "vector"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert 1 <= len(results) <= 5
    assert results[0]["text"] == caption
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert [h["score"] for h in results] == sorted((h["score"] for h in results), reverse=True)
    assert {h["modality"] for h in results} == {"text"}
    assert len({h["id"] for h in results}) == len(results)  # no item twice
    assert all(h["media_url"] is None for h in results)
    assert {"decode", "encode", "total"} <= set(body["timings_ms"])
    assert body["query"] == {
        "modality": "text",
        "target": "text",
        "k": 5,
        "rerank": False,
        "mode": "vector",
        "transcript": None,
    }


def test_text_search_for_images_returns_media_urls(client: TestClient) -> None:
    body = client.post("/v1/search", json={"text": "a dog", "target": "image", "k": 3}).json()
    assert len(body["results"]) == 3
    for hit in body["results"]:
        assert hit["modality"] == "image"
        assert hit["media_url"] == f"/v1/items/{hit['id']}/media"
        assert hit["thumb_url"] == f"/v1/items/{hit['id']}/media?thumb=256"
        assert "path" not in hit


def test_filters_keep_only_matching_attrs(client: TestClient) -> None:
    body = client.post(
        "/v1/search",
        json={"text": "people", "target": "image", "k": 10, "filters": {"label": "odd"}},
    ).json()
    assert body["results"], "three odd-labelled photos exist"
    assert all(h["attrs"]["label"] == "odd" for h in body["results"])


def test_image_search_finds_the_same_photo(
    client: TestClient, entries: list[dict[str, Any]]
) -> None:
    entry = entries[2]
    r = client.post(
        "/v1/search",
        files={"image": ("q.jpg", coco_bytes(entry), "image/jpeg")},
        data={"target": "image", "k": "3", "rerank": "false"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"][0]["id"] == entry["item_id"]
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert body["query"]["modality"] == "image"
    assert body["query"]["rerank"] is False


def test_multipart_text_search(client: TestClient, entries: list[dict[str, Any]]) -> None:
    caption = entries[0]["captions"][1]
    r = client.post(
        "/v1/search",
        data={"text": caption, "target": "text", "k": "1"},
        files={"unused": ("x", b"", "text/plain")},
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["text"] == caption


def test_get_item(client: TestClient, entries: list[dict[str, Any]]) -> None:
    entry = entries[1]
    item = client.get(f"/v1/items/{entry['item_id']}").json()
    assert item["modality"] == "image"
    assert item["mime"] == "image/jpeg"
    assert item["attrs"]["coco"] == entry["id"]
    assert sorted(item["linked"]) == sorted(entry["caption_ids"])
    cap = client.get(f"/v1/items/{entry['caption_ids'][0]}").json()
    assert cap["modality"] == "text" and cap["text"] in entry["captions"]
    assert cap["media_url"] is None
    missing = client.get("/v1/items/999999")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "item_not_found"


def test_upload_then_search_then_delete(client: TestClient, entries: list[dict[str, Any]]) -> None:
    photo = (Path(__file__).resolve().parents[2] / "shared/data/coco_mini" / "images").glob("*.jpg")
    data = sorted(photo)[-1].read_bytes()  # not among the indexed ones
    caption = "an uploaded photo with a unique caption zebra-4711"
    r = client.post(
        "/v1/items",
        files={"file": ("../../evil name.jpg", data, "image/jpeg")},
        data={
            "captions": [caption, '["second caption", "third caption"]'],
            "attrs": '{"label": "uploaded"}',
        },
    )
    assert r.status_code == 201, r.text
    item = r.json()
    assert r.headers["location"] == f"/v1/items/{item['id']}"
    assert item["attrs"]["label"] == "uploaded"
    assert len(item["linked"]) == 3
    # stored under the content hash inside the data dir, whatever the client called it
    rec = client.app.state.runtime.catalogue.get_item(item["id"])
    data_dir = client.app.state.runtime.catalogue.data_dir
    assert Path(rec.path).resolve().is_relative_to(data_dir)
    assert "evil" not in Path(rec.path).name and ".." not in rec.path

    found = client.post("/v1/search", json={"text": caption, "target": "text", "k": 1}).json()
    assert found["results"][0]["text"] == caption
    by_image = client.post(
        "/v1/search",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"target": "image", "k": "1"},
    ).json()
    assert by_image["results"][0]["id"] == item["id"]

    gone = client.delete(f"/v1/items/{item['id']}")
    assert gone.status_code == 200 and gone.json() == {"id": item["id"], "deleted": True}
    assert client.get(f"/v1/items/{item['id']}").status_code == 404
    assert client.delete(f"/v1/items/{item['id']}").status_code == 404
    after = client.post(
        "/v1/search",
        files={"image": ("q.jpg", data, "image/jpeg")},
        data={"target": "image", "k": "10"},
    ).json()
    assert item["id"] not in [h["id"] for h in after["results"]]
    texts = client.post("/v1/search", json={"text": caption, "target": "text", "k": 10}).json()
    assert caption not in [h["text"] for h in texts["results"]]


def test_media_full_thumb_and_ranges(client: TestClient, entries: list[dict[str, Any]]) -> None:
    entry = entries[0]
    original = coco_bytes(entry)
    url = f"/v1/items/{entry['item_id']}/media"
    full = client.get(url)
    assert full.status_code == 200
    assert full.content == original
    assert full.headers["content-type"] == "image/jpeg"
    assert full.headers["accept-ranges"] == "bytes"
    assert full.headers["x-content-type-options"] == "nosniff"

    part = client.get(url, headers={"Range": "bytes=10-109"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-109/{len(original)}"
    assert part.content == original[10:110]
    tail = client.get(url, headers={"Range": "bytes=-17"})
    assert tail.status_code == 206 and tail.content == original[-17:]
    bad = client.get(url, headers={"Range": f"bytes={len(original)}-"})
    assert bad.status_code == 416
    assert bad.headers["content-range"] == f"bytes */{len(original)}"
    assert bad.json()["error"]["code"] == "range_not_satisfiable"
    malformed = client.get(url, headers={"Range": "pages=1-2"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "bad_range"

    thumb = client.get(url, params={"thumb": 64})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(thumb.content))
    assert max(im.size) <= 64
    assert client.get(url, params={"thumb": 64}).content == thumb.content  # cached, same bytes
    too_big = client.get(url, params={"thumb": 4000})
    assert too_big.status_code == 422
    caption_media = client.get(f"/v1/items/{entry['caption_ids'][0]}/media")
    assert caption_media.status_code == 404
    assert caption_media.json()["error"]["code"] == "no_media"


def test_metrics_prometheus_format(client: TestClient) -> None:
    client.get("/healthz")
    client.get("/v1/items/424242")
    text = client.get("/metrics").text
    assert "# TYPE crossmedia_http_requests_total counter" in text
    assert 'crossmedia_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert re.search(
        r'crossmedia_http_requests_total\{method="GET",route="/v1/items/\{item_id\}",'
        r'status="404"\} \d+',
        text,
    )
    assert "424242" not in text  # route templates, never raw paths
    assert (
        'crossmedia_http_request_duration_seconds_bucket{method="GET",route="/healthz",le="+Inf"}'
        in text
    )
    assert re.search(r'crossmedia_items\{modality="image"\} \d+', text)
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(
            r'[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? [0-9.e+-]+', line
        ), line


def test_page_and_static(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'id="q"' in page.text and "/static/app.js" in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert client.get("/static/style.css").status_code == 200
    for text in (page.text, js.text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text  # no CDN, nothing external


def test_openapi_documents_both_bodies_examples_and_auth(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert body["application/json"]["schema"]["examples"]
    assert "image" in body["multipart/form-data"]["schema"]["properties"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    for path in ("/v1/search", "/v1/items"):
        assert {"401", "403", "413", "422", "429"} <= set(spec["paths"][path]["post"]["responses"])
    assert "examples" in spec["components"]["schemas"]["Item"]


class _ReverseReranker:
    """Stands in for the trained re-ranker: puts the first stage's order upside down."""

    def rerank(self, query: Any, candidates: Any, k: int) -> list[Any]:
        return list(reversed(candidates.hits))[:k]


def test_rerank_flag_reaches_the_service(
    world: tuple[Runtime, list[dict[str, Any]]], entries: list[dict[str, Any]]
) -> None:
    import dataclasses

    from api.deps import get_runtime
    from retrieval.search import SearchService

    engine, _ = world
    reranking = dataclasses.replace(
        engine, search=SearchService(engine.catalogue, engine.encoder, _ReverseReranker())
    )
    app = create_app(test_settings(engine.catalogue.data_dir), runtime=engine)
    app.dependency_overrides[get_runtime] = lambda: reranking
    caption = entries[4]["captions"][0]
    with TestClient(app) as c:
        assert c.get("/v1/stats").json()["reranker"] is True
        plain = c.post(
            "/v1/search",
            json={"text": caption, "target": "text", "k": 3, "rerank": False, "mode": "vector"},
        ).json()
        assert plain["results"][0]["text"] == caption
        assert plain["query"]["rerank"] is False and "rerank" not in plain["timings_ms"]
        reranked = c.post(
            "/v1/search", json={"text": caption, "target": "text", "k": 3, "mode": "vector"}
        ).json()
        assert reranked["query"]["rerank"] is True and "rerank" in reranked["timings_ms"]
        assert reranked["results"][0]["text"] != caption
        assert [h["score"] for h in reranked["results"]] != [h["score"] for h in plain["results"]]


@pytest.mark.skipif(not FSDD.is_dir(), reason=f"real audio clips missing: {FSDD}")
def test_audio_items_search_and_ranges(client: TestClient, entries: list[dict[str, Any]]) -> None:
    clip = entries[0]["audio"][1]
    data = (FSDD / clip["audio"]).read_bytes()
    item = client.get(f"/v1/items/{clip['item_id']}").json()
    assert item["modality"] == "audio" and item["mime"] == "audio/flac"
    assert 0.1 < item["duration"] < 2.0  # spoken digits
    assert item["thumb_url"] is None and item["media_url"].endswith("/media")

    r = client.post(
        "/v1/search",
        files={"audio": ("q.flac", data, "audio/flac")},
        data={"target": "audio", "k": "3"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"]["modality"] == "audio"
    assert body["results"][0]["id"] == clip["item_id"]
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    by_text = client.post("/v1/search", json={"text": "seven", "target": "audio", "k": 3}).json()
    assert {h["modality"] for h in by_text["results"]} == {"audio"}
    assert all(h["thumb_url"] is None and h["media_url"] for h in by_text["results"])

    url = item["media_url"]
    full = client.get(url)
    assert full.content == data and full.headers["content-type"] == "audio/flac"
    part = client.get(url, headers={"Range": "bytes=4-"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 4-{len(data) - 1}/{len(data)}"
    assert part.content == data[4:]
    two = client.get(url, headers={"Range": "bytes=0-3,8-11"})
    assert two.status_code == 206
    assert two.headers["content-type"].startswith("multipart/byteranges")
    assert data[:4] in two.content and data[8:12] in two.content
    thumb = client.get(url, params={"thumb": 64})
    assert thumb.status_code == 422 and thumb.json()["error"]["code"] == "no_thumbnail"


def test_concurrent_searches_uploads_and_deletes(
    client: TestClient, entries: list[dict[str, Any]]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    photos = sorted((COCO / "images").glob("*.jpg"))[-4:-1]  # not in the shared catalogue

    def search(i: int) -> int:
        caption = entries[i % len(entries)]["captions"][0]
        r = client.post("/v1/search", json={"text": caption, "target": "any", "k": 5})
        return r.status_code

    def churn(photo: Path) -> list[int]:
        up = client.post(
            "/v1/items",
            files={"file": (photo.name, photo.read_bytes(), "image/jpeg")},
            data={"captions": f"churn {photo.stem}"},
        )
        gone = client.delete(f"/v1/items/{up.json()['id']}")
        return [up.status_code, gone.status_code]

    with ThreadPoolExecutor(6) as pool:
        searches = pool.map(search, range(30))
        churned = pool.map(churn, photos)
        assert set(searches) == {200}
        assert [s for pair in churned for s in pair] == [201, 200] * len(photos)
    assert client.get("/readyz").status_code == 200


def test_read_write_lock_prefers_waiting_writers() -> None:
    import threading
    import time as _time

    from api.runtime import ReadWriteLock

    lock = ReadWriteLock()
    order: list[str] = []
    with lock.read():
        writer = threading.Thread(target=lambda: _locked(lock.write, order, "writer"))
        writer.start()
        _time.sleep(0.05)  # the writer is now waiting for this reader
        reader = threading.Thread(target=lambda: _locked(lock.read, order, "late reader"))
        reader.start()
        _time.sleep(0.05)
        assert order == []  # neither got in while the first reader holds the lock
    writer.join(2)
    reader.join(2)
    assert order == ["writer", "late reader"]


def _locked(acquire: Any, order: list[str], name: str) -> None:
    with acquire():
        order.append(name)


def test_hybrid_search_returns_media_with_the_matching_caption(
    client: TestClient, entries: list[dict[str, Any]]
) -> None:
    """Media first (issue 14): a caption's words find the photo it describes, once, with the
    caption as `matched` evidence; `where` filters in the engine; the mode is echoed."""
    caption = entries[2]["captions"][0]
    body = client.post("/v1/search", json={"text": caption, "target": "any", "k": 5}).json()
    top = body["results"][0]
    assert top["modality"] == "image" and top["id"] == entries[2]["item_id"]
    assert any(
        m["text"] == caption and m["channel"] in ("lexical", "vector") for m in top["matched"]
    )
    assert len({h["id"] for h in body["results"]}) == len(body["results"])
    lexical = client.post(
        "/v1/search", json={"text": caption, "target": "image", "k": 3, "mode": "lexical"}
    ).json()
    assert (
        lexical["query"]["mode"] == "lexical"
        and lexical["results"][0]["id"] == entries[2]["item_id"]
    )
    odd = client.post(
        "/v1/search",
        json={"text": caption, "target": "image", "k": 5, "where": {"label": {"in": ["odd"]}}},
    ).json()
    assert odd["results"] and all(h["attrs"]["label"] == "odd" for h in odd["results"])
    bad = client.post("/v1/search", json={"text": "x", "where": {"label": {"~": 1}}})
    assert bad.status_code == 422
