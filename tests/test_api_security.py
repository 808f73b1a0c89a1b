"""API keys and scopes, the loopback rule, CORS and path traversal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from api_support import (
    ADMIN_KEY,
    API_KEYS,
    READ_KEY,
    WRITE_KEY,
    coco_bytes,
    needs_coco,
    shared_engine,
    test_settings,
)
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.main import create_app
from api.runtime import Runtime
from api.server import serve
from api.settings import Settings, parse_api_keys

pytestmark = needs_coco


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runtime, list[dict[str, Any]]]:
    return shared_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def client(world: tuple[Runtime, list[dict[str, Any]]]) -> TestClient:
    engine, _ = world
    settings = test_settings(engine.catalogue.data_dir, api_keys=API_KEYS)
    with TestClient(create_app(settings, runtime=engine)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


SEARCH = {"text": "a cat", "k": 2}


def test_missing_and_unknown_keys_are_401(client: TestClient) -> None:
    for headers in (
        {},
        bearer("not-a-known-key"),
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer "},
    ):
        r = client.post("/v1/search", json=SEARCH, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
    assert client.get("/v1/items/1").status_code == 401
    assert client.get("/v1/items/1/media").status_code == 401
    assert client.get("/v1/stats").status_code == 401
    assert client.get("/metrics").status_code == 401


def test_scopes(client: TestClient, world: tuple[Runtime, list[dict[str, Any]]]) -> None:
    entry = world[1][0]
    assert client.post("/v1/search", json=SEARCH, headers=bearer(READ_KEY)).status_code == 200
    assert client.post("/v1/search", json=SEARCH, headers=bearer(ADMIN_KEY)).status_code == 200
    denied = client.post("/v1/search", json=SEARCH, headers=bearer(WRITE_KEY))
    assert denied.status_code == 403
    assert denied.json()["error"] == {
        "code": "insufficient_scope",
        "message": "This API key lacks the 'read' scope.",
    }
    upload = {"file": ("x.jpg", coco_bytes(entry), "image/jpeg")}
    assert client.post("/v1/items", files=upload, headers=bearer(READ_KEY)).status_code == 403
    assert client.delete("/v1/items/1", headers=bearer(READ_KEY)).status_code == 403
    # the same bytes again: the existing item comes back, nothing new is written
    r = client.post("/v1/items", files=upload, headers=bearer(WRITE_KEY))
    assert r.status_code == 201 and r.json()["id"] == entry["item_id"]
    assert client.get(f"/v1/items/{entry['item_id']}", headers=bearer(READ_KEY)).status_code == 200


def test_open_endpoints_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_keys_never_appear_in_settings_repr() -> None:
    s = Settings(data_dir="x", api_keys=API_KEYS)
    assert READ_KEY not in repr(s) and ADMIN_KEY not in str(s)


def test_api_key_formats() -> None:
    compact = parse_api_keys(f"{READ_KEY}:read, {ADMIN_KEY}:read+write")
    as_json = parse_api_keys(f'{{"{READ_KEY}": ["read"], "{ADMIN_KEY}": "read+write"}}')
    assert compact == as_json == {READ_KEY: {"read"}, ADMIN_KEY: {"read", "write"}}
    assert parse_api_keys("") == {}
    for bad in (f"{READ_KEY}", f"{READ_KEY}:admin", "short:read", '{"broken'):
        with pytest.raises(ValueError):
            parse_api_keys(bad)


def test_env_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CROSSMEDIA_API_KEYS", API_KEYS)
    monkeypatch.setenv("CROSSMEDIA_HOST", "0.0.0.0")
    monkeypatch.setenv("CROSSMEDIA_MAX_K", "7")
    s = Settings()
    assert s.host == "0.0.0.0" and s.max_k == 7 and s.api_keys[WRITE_KEY] == {"write"}
    file = tmp_path / "server.toml"
    file.write_text('max_k = 11\nmodel = "tiny-test"\n')
    monkeypatch.setenv("CROSSMEDIA_SETTINGS_FILE", str(file))
    s = Settings()
    assert s.max_k == 7 and s.model == "tiny-test"  # environment beats the file
    monkeypatch.setenv("CROSSMEDIA_MAX_K", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_no_keys_means_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CROSSMEDIA_API_KEYS", raising=False)
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.5"):
        assert Settings(host=host).host == host
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.org"):
        with pytest.raises(ValidationError, match="without API keys"):
            Settings(host=host)
    with pytest.raises(SystemExit, match="Refusing to serve on '0.0.0.0' without API keys"):
        serve("unused-dir", host="0.0.0.0", port=8123, model="tiny-test")
    assert Settings(host="0.0.0.0", api_keys=API_KEYS).host == "0.0.0.0"


def test_cors_closed_unless_configured(world: tuple[Runtime, list[dict[str, Any]]]) -> None:
    engine, _ = world
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(test_settings(engine.catalogue.data_dir), runtime=engine)) as c:
        r = c.options("/v1/search", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = c.post("/v1/search", json=SEARCH, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    settings = test_settings(engine.catalogue.data_dir, cors_origins="https://app.example")
    with TestClient(create_app(settings, runtime=engine)) as c:
        ok = c.options("/v1/search", headers={**preflight, "Origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = c.options("/v1/search", headers=preflight)
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/items/..%2F..%2Fetc%2Fpasswd",
        "/v1/items/../../etc/passwd",
        "/v1/items/1%2F..%2F..%2Fcatalogue.db/media",
        "/v1/items/%2e%2e/media",
        "/v1/items/-1/media",
        "/v1/items/0",
        f"/v1/items/{2**63}",
        f"/v1/items/{10**30}/media",
        "/v1/items/1e3",
        "/static/../api/settings.py",
        "/static/..%2Fsettings.py",
        "/static/%2e%2e/%2e%2e/catalogue.db",
    ],
)
def test_traversal_attempts_never_reach_files(client: TestClient, path: str) -> None:
    r = client.get(path, headers=bearer(READ_KEY))
    assert r.status_code in (400, 404, 422), (path, r.status_code)
    assert r.headers["content-type"].startswith("application/json")
    assert b"SQLite" not in r.content and b"CROSSMEDIA_" not in r.content


def test_anonymous_upload_is_refused_before_its_body_is_read(
    world: tuple[Runtime, list[dict[str, Any]]],
) -> None:
    import asyncio

    engine, _ = world
    app = create_app(test_settings(engine.catalogue.data_dir, api_keys=API_KEYS), runtime=engine)
    app.state.runtime = engine
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"\0" * 65536, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

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
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "headers": [
            (b"host", b"testserver"),
            (b"content-length", b"10000000"),
            (b"content-type", b"multipart/form-data; boundary=xyz"),
        ],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401
    assert pulled == 0
