"""The server side of benchmarks/scale.py: text search and upload latency over HTTP against a
large catalogue, and a kill -9 in the middle of a burst of uploads."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import scale_data as data
from benchmarks.http_bench import free_port, percentiles, start_server

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k"
TEXTS = [
    "a dog running on the beach", "two children playing football", "a man riding a bicycle",
    "a red car parked on a street", "people walking in the snow", "a black and white cat",
    "a girl jumping into a pool", "a crowd at a concert", "a boat on a lake at sunset",
    "a brown horse in a field", "a skier going down a mountain", "an old man sitting on a bench",
]  # fmt: skip


def photos(n: int, skip: int = 0) -> list[Path]:
    """Real photos to upload (read in place from ../shared/data/flickr8k)."""
    rows = [json.loads(line) for line in (SHARED / "items.jsonl").open()]
    return [SHARED / r["image"] for r in rows[skip : skip + n]]


def search_latency(base: str, repeats: int = 5) -> tuple[dict[str, float], dict[str, list[int]]]:
    """p50/p95 of first-stage text searches (encoder included), and the ids each returned."""
    times, got = [], {}
    with httpx.Client(base_url=base, timeout=120) as client:
        for i in range(repeats * len(TEXTS) + 3):
            text = TEXTS[i % len(TEXTS)]
            t = time.perf_counter()
            r = client.post(
                "/v1/search", json={"text": text, "target": "image", "k": 10, "rerank": False}
            )
            dt = time.perf_counter() - t
            r.raise_for_status()
            if i >= 3:  # the first calls warm the encoder up
                times.append(dt)
            got[text] = [h["id"] for h in r.json()["results"]]
    return percentiles(times), got


def upload_latency(base: str, files: list[Path]) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for p in files:
            t = time.perf_counter()
            r = client.post("/v1/items", files={"file": (p.name, p.read_bytes(), "image/jpeg")})
            times.append(time.perf_counter() - t)
            r.raise_for_status()
    return percentiles(times)


def serve_and_measure(data_dir: Path, uploads: int, upload_skip: int) -> dict[str, Any]:
    port = free_port()
    proc = start_server(data_dir, data.MODEL, port)
    base = f"http://127.0.0.1:{port}"
    try:
        search, got = search_latency(base)
        upload = upload_latency(base, photos(uploads, upload_skip))
    finally:
        proc.terminate()
        proc.wait(60)
    return {"search_ms": search, "upload_ms": upload, "search_ids": got}


def kill_during_uploads(data_dir: Path, skip: int, ack_before_kill: int = 8) -> dict[str, Any]:
    """Uploads from a thread; kill -9 the server once `ack_before_kill` were acknowledged;
    then reopen: every acknowledged upload present, index ids equal store ids."""
    from retrieval.catalogue import Catalogue

    port = free_port()
    proc = start_server(data_dir, data.MODEL, port)
    acked: list[int] = []
    stop = threading.Event()

    def burst() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for p in photos(200, skip):
                if stop.is_set():
                    return
                try:
                    r = client.post(
                        "/v1/items", files={"file": (p.name, p.read_bytes(), "image/jpeg")}
                    )
                except httpx.HTTPError:
                    return
                if r.status_code == 201 or r.status_code == 200:
                    acked.append(int(r.json()["id"]))

    worker = threading.Thread(target=burst)
    worker.start()
    while len(acked) < ack_before_kill and worker.is_alive():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stop.set()
    worker.join()
    t = time.perf_counter()
    with Catalogue.open(data_dir, create=False) as cat:
        index_ids = cat.index("image").ids()
        reopen_s = time.perf_counter() - t
        store_ids = cat.store.ids("image")
        missing = [i for i in acked if cat.get_item(i) is None]
        return {
            "acknowledged": len(acked),
            "acknowledged_missing": len(missing),
            "index_equals_store": bool(np.array_equal(index_ids, store_ids)),
            "reopen_s": round(reopen_s, 2),
            "repairs": list(cat.repairs),
        }
