"""Issue 11 finding 9: writers must not starve readers. The lock's order (phase-fair) as a unit
test, and searches under a stream of uploads whose encoding is slow: every search finishes in a
bound, because uploads encode outside the lock and readers wait for at most one commit."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from api_support import LiveServer, build_engine, needs_coco, test_settings
from PIL import Image

from api.main import create_app
from api.runtime import ReadWriteLock, Runtime
from indexer.pipeline import Ingestor


def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "a thread never reached the lock"
        time.sleep(0.005)


def _start(lock: ReadWriteLock, kind: str, name: str, log: list[str]) -> threading.Thread:
    def run() -> None:
        with lock.read() if kind == "r" else lock.write():
            log.append(name)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_readers_waiting_when_a_writer_releases_go_before_the_next_writer() -> None:
    lock, log = ReadWriteLock(), []
    with lock.write():
        threads = [_start(lock, "r", "R1", log)]
        _until(lambda: lock.waiting == (1, 0))
        threads.append(_start(lock, "w", "W2", log))
        _until(lambda: lock.waiting == (1, 1))
        threads.append(_start(lock, "r", "R2", log))
        _until(lambda: lock.waiting == (2, 1))
        threads.append(_start(lock, "w", "W3", log))
        _until(lambda: lock.waiting == (2, 2))
    for t in threads:
        t.join(5)
    assert sorted(log[:2]) == ["R1", "R2"] and log[2:] == ["W2", "W3"]


def test_a_waiting_writer_is_not_starved_by_new_readers() -> None:
    lock, log = ReadWriteLock(), []
    with lock.read():
        threads = [_start(lock, "w", "W", log)]
        _until(lambda: lock.waiting == (0, 1))
        threads.append(_start(lock, "r", "R", log))  # arrives after the writer: waits for it
        _until(lambda: lock.waiting == (1, 1))
        assert log == []
    for t in threads:
        t.join(5)
    assert log == ["W", "R"]


class _SlowEncoder:
    """The ingestion side of a heavier model: each embed pass takes `delay` seconds."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner, self._delay = inner, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def encode_with_tokens(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self._delay)
        return self._inner.encode_with_tokens(*args, **kwargs)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (19, 19, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def slow_upload_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    runtime, _ = build_engine(tmp_path_factory.mktemp("fairness"), n=3, n_audio=0)
    runtime.ingestor = Ingestor(
        runtime.catalogue,
        _SlowEncoder(runtime.encoder, 0.4),  # type: ignore[arg-type]
        limits=runtime.ingestor.limits,
    )
    yield runtime
    runtime.close()


UPLOADERS, UPLOADS_EACH, SEARCH_BOUND_S = 4, 6, 3.0


@needs_coco
@pytest.mark.slow
def test_searches_finish_while_uploads_stream_in(slow_upload_engine: Runtime) -> None:
    app = create_app(
        test_settings(slow_upload_engine.catalogue.data_dir), runtime=slow_upload_engine
    )
    latencies: list[float] = []
    statuses: list[int] = []
    uploading = threading.Event()
    uploading.set()

    def upload(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for i in range(UPLOADS_EACH):
                files = {"file": ("x.png", _png(1000 * worker + i), "image/png")}
                statuses.append(c.post("/v1/items", files=files).status_code)

    def search() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            while uploading.is_set():
                t0 = time.monotonic()
                r = c.post("/v1/search", json={"text": "a photo of a dog", "k": 5})
                latencies.append(time.monotonic() - t0)
                statuses.append(r.status_code)

    with LiveServer(app) as server:
        uploaders = [threading.Thread(target=upload, args=(w,)) for w in range(UPLOADERS)]
        searchers = [threading.Thread(target=search) for _ in range(2)]
        for t in uploaders + searchers:
            t.start()
        for t in uploaders:
            t.join(300)
        uploading.clear()
        for t in searchers:
            t.join(300)
    assert set(statuses) == {200, 201}, statuses
    assert statuses.count(201) == UPLOADERS * UPLOADS_EACH
    assert len(latencies) >= 10
    assert max(latencies) < SEARCH_BOUND_S, sorted(latencies)[-5:]
