"""Shared fixtures for the API tests: a real catalogue built with the "tiny-test" encoder from a few
real COCO photos, and helpers to build apps and clients around it.

Imported by tests/test_api_*.py (`from api_support import ...`); pytest puts tests/ on sys.path.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.engine import Engine
from api.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO = DATA / "coco_mini"
FSDD = DATA / "fsdd"

needs_coco = pytest.mark.skipif(
    not (COCO / "items.jsonl").is_file(), reason=f"real test photos missing: {COCO}"
)

READ_KEY = "reader-key-0001"
WRITE_KEY = "writer-key-0002"
ADMIN_KEY = "admin-key-00003"
API_KEYS = f"{READ_KEY}:read,{WRITE_KEY}:write,{ADMIN_KEY}:read+write"

N_PHOTOS = 7  # small and odd, per the test style


def coco_entries(n: int = N_PHOTOS) -> list[dict[str, Any]]:
    lines = (COCO / "items.jsonl").read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


def coco_bytes(entry: dict[str, Any]) -> bytes:
    return (COCO / entry["image"]).read_bytes()


def fsdd_clip() -> bytes:
    return next(iter(sorted((FSDD / "audio").glob("*.flac")))).read_bytes()


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"data_dir": data_dir, "model": "tiny-test", "rate_limit_per_minute": 0}
    base.update(overrides)
    return Settings(**base)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def build_engine(data_dir: Path, n: int = N_PHOTOS) -> tuple[Engine, list[dict[str, Any]]]:
    """Load the real engine on `data_dir` and index `n` COCO photos (2 captions each, a label)."""
    engine = Engine.load(test_settings(data_dir))
    entries = coco_entries(n)
    for i, entry in enumerate(entries):
        rec = engine.ingestor.add_upload(
            coco_bytes(entry),
            Path(entry["image"]).name,
            captions=entry["captions"][:2],
            attrs={"label": "even" if i % 2 == 0 else "odd", "coco": entry["id"]},
        )
        entry["item_id"] = rec.id
        entry["caption_ids"] = list(rec.linked)
    return engine, entries


def client_for(app: FastAPI, **kwargs: Any) -> TestClient:
    return TestClient(app, **kwargs)


class LiveServer:
    """uvicorn in a background thread on a free loopback port (for browser and socket tests)."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def live_server(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


_SHARED: dict[str, tuple[Engine, list[dict[str, Any]]]] = {}


def shared_engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, list[dict[str, Any]]]:
    """One read-mostly engine for the whole session (tests that delete use their own uploads)."""
    if "engine" not in _SHARED:
        _SHARED["engine"] = build_engine(tmp_path_factory.mktemp("api-catalogue"))
    return _SHARED["engine"]
