"""Every limit answers cheaply with a JSON error: body size, k, pixels, seconds, time, rate; and
bad input is always a 4xx, never a 500."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from api_support import (
    ADMIN_KEY,
    API_KEYS,
    FSDD,
    READ_KEY,
    LiveServer,
    coco_bytes,
    fsdd_clip,
    needs_coco,
    shared_engine,
    test_settings,
)
from fastapi.testclient import TestClient

from api.deps import get_runtime
from api.main import create_app
from api.runtime import Runtime

pytestmark = needs_coco

FIFTY_MB = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runtime, list[dict[str, Any]]]:
    return shared_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def engine(world: tuple[Runtime, list[dict[str, Any]]]) -> Runtime:
    return world[0]


@pytest.fixture(scope="module")
def photo(world: tuple[Runtime, list[dict[str, Any]]]) -> bytes:
    return coco_bytes(world[1][0])


def make_client(engine: Runtime, **overrides: Any) -> TestClient:
    return TestClient(
        create_app(test_settings(engine.catalogue.data_dir, **overrides), runtime=engine)
    )


@pytest.fixture(scope="module")
def client(engine: Runtime) -> TestClient:
    with make_client(engine) as c:
        yield c


def assert_error(r: Any, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body


# -- body size ---------------------------------------------------------------------------------


def _asgi_upload(
    app: Any, *, content_length: int | None, total: int, chunk: int = 64 * 1024
) -> tuple[int, dict[str, Any], int]:
    """Drive the ASGI app with a multipart upload of `total` bytes; returns the status, the JSON
    body and how many body bytes the app actually pulled from the client."""
    pulled = 0
    sent_chunks = 0
    messages: list[dict[str, Any]] = []
    headers = [(b"content-type", b"multipart/form-data; boundary=xyz"), (b"host", b"testserver")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    head = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
    )

    async def receive() -> dict[str, Any]:
        nonlocal pulled, sent_chunks
        if pulled >= total:
            return {"type": "http.disconnect"}
        body = head if sent_chunks == 0 else b"\0" * min(chunk, total - pulled)
        sent_chunks += 1
        pulled += len(body)
        return {"type": "http.request", "body": body, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/items",
        "raw_path": b"/v1/items",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], json.loads(body), pulled


def test_413_from_content_length_before_reading_the_body(engine: Runtime) -> None:
    app = create_app(test_settings(engine.catalogue.data_dir))
    app.dependency_overrides[get_runtime] = lambda: engine
    status, body, pulled = _asgi_upload(app, content_length=FIFTY_MB, total=FIFTY_MB)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert pulled == 0  # not a single body byte was read


def test_413_for_a_chunked_body_stops_reading_at_the_limit(engine: Runtime) -> None:
    limit = 1024 * 1024
    app = create_app(test_settings(engine.catalogue.data_dir, max_body_bytes=limit))
    app.dependency_overrides[get_runtime] = lambda: engine
    status, body, pulled = _asgi_upload(app, content_length=None, total=FIFTY_MB)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert pulled <= limit + 64 * 1024 + 200  # one chunk past the limit, not 50 MB


def test_413_over_a_real_socket_without_sending_the_body(engine: Runtime) -> None:
    app = create_app(test_settings(engine.catalogue.data_dir), runtime=engine)
    with LiveServer(app) as server, socket.create_connection(("127.0.0.1", server.port)) as s:
        s.settimeout(10)
        s.sendall(
            b"POST /v1/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            + f"Content-Length: {FIFTY_MB}\r\n\r\n".encode()
        )
        t0 = time.monotonic()
        reply = b""
        while chunk := s.recv(65536):  # the server closes after answering
            reply += chunk
        assert time.monotonic() - t0 < 5
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"payload_too_large"' in reply


def test_413_json_for_an_oversized_search(engine: Runtime) -> None:
    with make_client(engine, max_body_bytes=10_000) as c:
        assert_error(c.post("/v1/search", json={"text": "x" * 20_000}), 413, "payload_too_large")
        assert c.post("/v1/search", json={"text": "x"}).status_code == 200


# -- k, text, pixels, bytes, seconds ----------------------------------------------------------


def test_k_limit(client: TestClient, photo: bytes) -> None:
    assert_error(client.post("/v1/search", json={"text": "a", "k": 101}), 422, "k_too_large")
    assert_error(client.post("/v1/search", json={"text": "a", "k": 0}), 422)
    assert_error(client.post("/v1/search", json={"text": "a", "k": 10**9}), 422)
    assert_error(client.post("/v1/search", json={"text": "a", "k": "ten"}), 422)
    assert client.post("/v1/search", json={"text": "a", "k": 100}).status_code == 200
    r = client.post(
        "/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")}, data={"k": "500"}
    )
    assert_error(r, 422, "k_too_large")


def test_k_limit_is_a_setting(engine: Runtime) -> None:
    with make_client(engine, max_k=3) as c:
        assert_error(c.post("/v1/search", json={"text": "a", "k": 4}), 422, "k_too_large")
        assert len(c.post("/v1/search", json={"text": "a", "k": 3}).json()["results"]) == 3


def test_image_pixel_and_byte_limits(tmp_path: Path, photo: bytes) -> None:
    # The upload limits live in the ingestor, which the lifespan builds from the same settings.
    settings = test_settings(tmp_path / "small", max_image_pixels=1000)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert_error(r, 413, "media_too_large")
        assert "max_image_pixels" in r.json()["error"]["message"]
        r = c.post("/v1/items", files={"file": ("q.jpg", photo, "image/jpeg")})
        assert_error(r, 413, "media_too_large")
    settings = test_settings(tmp_path / "small", max_image_bytes=1000)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert_error(r, 413, "media_too_large")
        r = c.post("/v1/items", files={"file": ("q.jpg", photo, "image/jpeg")})
        assert_error(r, 413, "media_too_large")
        assert c.get("/readyz").json()["counts"].get("image", 0) == 0


@pytest.mark.skipif(not FSDD.is_dir(), reason=f"real audio clips missing: {FSDD}")
def test_audio_seconds_limit_and_modality(engine: Runtime, tmp_path: Path) -> None:
    clip = fsdd_clip()  # 0.3 s of speech
    with TestClient(create_app(test_settings(tmp_path, max_audio_seconds=0.05))) as c:
        r = c.post("/v1/search", files={"audio": ("q.flac", clip, "audio/flac")})
        assert_error(r, 413, "media_too_large")
        r = c.post("/v1/items", files={"file": ("q.flac", clip, "audio/flac")})
        assert_error(r, 413, "media_too_large")
    with TestClient(create_app(test_settings(tmp_path / "plain"))) as c:
        # the plain tiny test model has no audio tower: a clear 422, not a 500
        r = c.post("/v1/search", files={"audio": ("q.flac", clip, "audio/flac")})
        assert_error(r, 422, "unsupported_modality")
        r = c.post("/v1/items", files={"file": ("q.flac", clip, "audio/flac")})
        assert_error(r, 422, "unsupported_modality")


def test_text_length_limit(engine: Runtime) -> None:
    with make_client(engine, max_text_chars=50) as c:
        assert_error(c.post("/v1/search", json={"text": "word " * 20}), 422, "query_too_long")


# -- bad input is 4xx -------------------------------------------------------------------------


def test_corrupt_and_truncated_images(client: TestClient, photo: bytes) -> None:
    junk = b"\xff\xd8\xff" + bytes(range(256)) * 8
    for files in (
        {"image": ("q.jpg", b"not an image at all", "image/jpeg")},
        {"image": ("q.jpg", junk, "image/jpeg")},
    ):
        assert client.post("/v1/search", files=files).status_code in (415, 422)
    r = client.post("/v1/items", files={"file": ("x.gif", b"GIF89a" + b"\0" * 50, "image/gif")})
    assert r.status_code in (415, 422) and r.json()["error"]["code"] in (
        "unsupported_media",
        "invalid_media",
    )
    assert_error(
        client.post("/v1/items", files={"file": ("x.jpg", b"hello", "image/jpeg")}),
        415,
        "unsupported_media",
    )
    truncated = photo[: len(photo) // 3]
    r = client.post("/v1/search", files={"image": ("q.jpg", truncated, "image/jpeg")})
    assert_error(r, 422, "invalid_media")
    r = client.post("/v1/items", files={"file": ("q.jpg", truncated, "image/jpeg")})
    assert_error(r, 422, "invalid_media")
    assert_error(
        client.post("/v1/search", files={"image": ("q.jpg", b"", "image/jpeg")}), 422, "empty_file"
    )
    assert_error(client.post("/v1/items", files={"file": ("q.jpg", b"", "image/jpeg")}), 415)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, None),
        ({"json": {"text": "a", "colour": "red"}}, 422, None),
        ({"json": {"text": "   "}}, 422, "empty_query"),
        ({"json": {"text": "a", "target": "video"}}, 422, None),
        ({"json": {"text": "a", "filters": {"label": ["a"]}}}, 422, None),
        ({"json": ["text"]}, 422, None),
        ({"content": b"text=a", "headers": {"content-type": "text/plain"}}, 415, None),
        ({"content": b"text=a"}, 415, None),
        ({"data": {"text": "a", "filters": "{oops"}}, 422, "invalid_filters"),
        ({"data": {"target": "image"}}, 422, "bad_query"),
        (
            {
                "content": b"--xyz\r\nbroken",
                "headers": {"content-type": "multipart/form-data; boundary=xyz"},
            },
            422,
            "bad_query",
        ),
    ],
)
def test_bad_search_requests(
    client: TestClient, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    if "data" in kwargs:  # force multipart encoding
        kwargs = {**kwargs, "files": {"unused": ("u", b"", "text/plain")}}
    assert_error(client.post("/v1/search", **kwargs), status, code)


def test_image_and_text_together_is_422(client: TestClient, photo: bytes) -> None:
    r = client.post(
        "/v1/search", data={"text": "a dog"}, files={"image": ("q.jpg", photo, "image/jpeg")}
    )
    assert_error(r, 422, "bad_query")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"attrs": "[1, 2]"}, "invalid_attrs"),
        ({"attrs": "{nope"}, "invalid_attrs"),
        ({"captions": '["ok", 3]'}, "invalid_captions"),
        ({"captions": "[broken"}, "invalid_captions"),
        ({"captions": [f"c{i}" for i in range(21)]}, "too_many_captions"),
    ],
)
def test_bad_upload_fields(
    client: TestClient, photo: bytes, data: dict[str, Any], code: str
) -> None:
    r = client.post("/v1/items", data=data, files={"file": ("q.jpg", photo, "image/jpeg")})
    assert_error(r, 422, code)


def test_upload_without_file_is_422(client: TestClient) -> None:
    assert_error(
        client.post(
            "/v1/items", data={"captions": "x"}, files={"other": ("a", b"a", "text/plain")}
        ),
        422,
    )


# -- time and rate ----------------------------------------------------------------------------


class _SlowSearch:
    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def search(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.search(*args, **kwargs)


def test_request_timeout_is_504_json(engine: Runtime) -> None:
    slow = dataclasses.replace(engine, search=_SlowSearch(engine.search, 1.5))
    app = create_app(
        test_settings(engine.catalogue.data_dir, request_timeout_s=0.3), runtime=engine
    )
    app.dependency_overrides[get_runtime] = lambda: slow
    with TestClient(app) as c:
        t0 = time.monotonic()
        r = c.post("/v1/search", json={"text": "slow"})
        elapsed = time.monotonic() - t0
        assert_error(r, 504, "timeout")
        assert elapsed < 1.4
        assert c.get("/healthz").status_code == 200  # the server keeps answering
        time.sleep(1.3)  # let the abandoned worker finish before the engine is reused


def test_rate_limit_429_with_retry_after(engine: Runtime) -> None:
    with make_client(engine, rate_limit_per_minute=6, rate_limit_burst=3, api_keys=API_KEYS) as c:
        read = {"Authorization": f"Bearer {READ_KEY}"}
        for _ in range(3):
            assert c.get("/v1/stats", headers=read).status_code == 200
        r = c.post("/v1/search", json={"text": "a"}, headers=read)
        assert_error(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) == 10  # 6 per minute: one token every 10 s
        # buckets are per key, and health checks are never limited
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert c.get("/v1/stats", headers=admin).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_rate_limit_per_address_without_keys(engine: Runtime) -> None:
    with make_client(engine, rate_limit_per_minute=60, rate_limit_burst=2) as c:
        assert c.get("/v1/items/999999").status_code == 404
        assert c.get("/v1/items/999999").status_code == 404
        assert_error(c.get("/v1/items/999999"), 429, "rate_limited")


def test_token_bucket_refills() -> None:
    from api.security import TokenBucketLimiter

    now = [0.0]
    bucket = TokenBucketLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert bucket.acquire("a") == 0 and bucket.acquire("a") == 0
    assert bucket.acquire("a") == pytest.approx(1.0)
    now[0] = 0.5
    assert bucket.acquire("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert bucket.acquire("a") == 0
    assert bucket.acquire("b") == 0
    assert TokenBucketLimiter(per_minute=0, burst=1).acquire("a") == 0  # disabled
