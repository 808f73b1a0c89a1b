"""Shared fixtures for the API tests: a real catalogue built with the "tiny-test" encoder from a few
real COCO photos, and helpers to build apps and clients around it.

Imported by tests/test_api_*.py (`from api_support import ...`); pytest puts tests/ on sys.path.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI

from api.media import media_limits
from api.runtime import Runtime
from api.settings import Settings
from indexer.pipeline import Ingestor
from indexer.uploads import add_upload
from retrieval.encoders.base import Encoder, l2_normalize
from retrieval.modality import Modality

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


class TinyWithAudio(Encoder):
    """The tiny-test encoder plus a deterministic stand-in audio tower (band energies of the
    spectrum), so audio items can be uploaded, searched and served in tests. Same space as
    tiny-test; the same clip always gives the same vector."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.space = inner.space
        self.modalities = frozenset({Modality.IMAGE, Modality.TEXT, Modality.AUDIO})

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.inner.encode_texts(texts, batch_size)

    def encode_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        return self.inner.encode_images(images, batch_size)

    def encode_audio(self, clips: Sequence[Any], batch_size: int = 8) -> np.ndarray:
        rows = []
        for clip in clips:
            spectrum = np.abs(np.fft.rfft(clip.samples, n=4096))
            bands = np.array_split(np.log1p(spectrum), self.dim)
            rows.append([b.mean() for b in bands])
        return l2_normalize(np.asarray(rows, dtype=np.float32) - 0.5)


def fsdd_entries(n: int) -> list[dict[str, Any]]:
    lines = (FSDD / "items.jsonl").read_text().splitlines()
    picked = [json.loads(line) for line in lines[:: max(len(lines) // n, 1)]][:n]
    return picked


def build_engine(
    data_dir: Path, n: int = N_PHOTOS, n_audio: int = 3
) -> tuple[Runtime, list[dict[str, Any]]]:
    """The real catalogue, search service and ingestor on `data_dir`, with the tiny-test model
    (plus the stand-in audio tower); `n` COCO photos (2 captions each, a label) and `n_audio`
    spoken-digit clips are indexed. Returns the engine and the photo entries (with their ids);
    the clips are under the "audio" key of the first entry."""
    from retrieval.search import SearchService

    settings = test_settings(data_dir)
    plain = Runtime.load(settings)
    encoder = TinyWithAudio(plain.encoder)
    engine = Runtime(
        catalogue=plain.catalogue,
        encoder=encoder,
        search=SearchService(plain.catalogue, encoder),
        ingestor=Ingestor(plain.catalogue, encoder, limits=media_limits(settings)),
    )
    entries = coco_entries(n)
    for i, entry in enumerate(entries):
        rec = add_upload(
            engine.ingestor,
            coco_bytes(entry),
            Path(entry["image"]).name,
            captions=entry["captions"][:2],
            attrs={"label": "even" if i % 2 == 0 else "odd", "coco": entry["id"]},
        )
        entry["item_id"] = rec.id
        entry["caption_ids"] = list(rec.linked)
    clips = fsdd_entries(n_audio) if FSDD.is_dir() and n_audio else []
    for clip in clips:
        rec = add_upload(
            engine.ingestor,
            (FSDD / clip["audio"]).read_bytes(),
            Path(clip["audio"]).name,
            captions=[f"someone says {clip['label']}"],
            attrs={"label": clip["label"]},
        )
        clip["item_id"] = rec.id
    if entries:
        entries[0]["audio"] = clips
    return engine, entries


class LiveServer:
    """uvicorn in a background thread on a free loopback port (for browser and socket tests);
    `options` go to `uvicorn.Config`."""

    def __init__(self, app: FastAPI, **options: Any) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", **options
        )
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


_SHARED: dict[str, tuple[Runtime, list[dict[str, Any]]]] = {}


def shared_engine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runtime, list[dict[str, Any]]]:
    """One read-mostly engine for the whole session (tests that delete use their own uploads)."""
    if "engine" not in _SHARED:
        _SHARED["engine"] = build_engine(tmp_path_factory.mktemp("api-catalogue"))
    return _SHARED["engine"]
