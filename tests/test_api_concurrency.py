"""Issue 11 finding 1: a real server process taking uploads from a few client threads while other
processes read the same catalogue (`crossmedia info` and `crossmedia search` in a loop) and a CLI
writer (`crossmedia index`) runs once. Every upload ends 201; while the CLI writer holds the
catalogue's write lock the server answers 503 + Retry-After and the client retries (counted);
no other 5xx; every CLI command exits 0; at the end `crossmedia verify` finds index ids == store
ids. Loopback only, seeded, bounded in time and count."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from api_support import COCO, coco_entries, needs_coco
from PIL import Image

pytestmark = [needs_coco, pytest.mark.slow]

CLI = str(Path(sys.executable).parent / "crossmedia")
CLIENTS, MIN_UPLOADS, MAX_UPLOADS, DEADLINE_S = 3, 24, 150, 240
SEED = 11


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (17, 17, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _manifest(folder: Path, entries: list[dict[str, Any]]) -> Path:
    """A manifest with its photos copied beside it (media paths stay inside its folder)."""
    (folder / "images").mkdir(parents=True)
    lines = []
    for e in entries:
        shutil.copy(COCO / e["image"], folder / e["image"])
        lines.append(
            json.dumps({"id": e["id"], "image": e["image"], "captions": e["captions"][:2]})
        )
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "items.jsonl"


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


class _Uploads:
    """Client threads uploading distinct seeded images at a steady pace until told to stop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: list[int] = []
        self.retries = 0
        self.done = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= MAX_UPLOADS or (self.stop.is_set() and self._next >= MIN_UPLOADS):
                return None
            self._next += 1
            return self._next

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while (n := self._take()) is not None:
                self._one(c, n)
                time.sleep(0.1)

    def _one(self, c: httpx.Client, n: int) -> None:
        files = {"file": (f"u{n}.png", _png(SEED * 1000 + n), "image/png")}
        for _ in range(60):
            r = c.post("/v1/items", files=files, data={"captions": f"upload {n}"})
            with self._lock:
                self.statuses.append(r.status_code)
            if r.status_code != 503 or "Retry-After" not in r.headers:
                break
            with self._lock:
                self.retries += 1
            time.sleep(min(float(r.headers["Retry-After"]), 0.5))
        with self._lock:
            self.done += r.status_code == 201


def _reader_loop(
    data_dir: Path, env: dict[str, str], stop: threading.Event, codes: list[tuple[str, int, str]]
) -> None:
    while not stop.is_set():
        for args in (("info", "--json"), ("search", "--text", "a dog", "--no-rerank", "--json")):
            p = _cli(*args, "--data-dir", str(data_dir), env=env)
            codes.append((args[0], p.returncode, p.stderr[-500:]))


def _cli_writer(
    manifest: Path,
    data_dir: Path,
    env: dict[str, str],
) -> tuple[subprocess.CompletedProcess[str], int]:
    """`crossmedia index` once; retried when it started while the server held the write lock for
    a commit (`index` refuses at once instead of waiting: the operator retries likewise)."""
    for retries in range(20):
        p = _cli("index", str(manifest), "--data-dir", str(data_dir), env=env, timeout=DEADLINE_S)
        if p.returncode == 0 or "Another process is writing" not in p.stderr:
            return p, retries
        time.sleep(0.2)
    return p, retries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def test_server_uploads_with_cli_readers_and_a_cli_writer(tmp_path: Path) -> None:
    entries = coco_entries(8)
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "CROSSMEDIA_RATE_LIMIT_PER_MINUTE": "0",
        "CROSSMEDIA_TORCH_THREADS": "1",
        "CROSSMEDIA_WRITE_LOCK_TIMEOUT_S": "0.5",
    }
    first = _cli(
        "index",
        str(_manifest(tmp_path / "m0", entries[:3])),
        "--data-dir",
        str(data_dir),
        "--model",
        "tiny-test",
        env=env,
    )
    assert first.returncode == 0, first.stderr
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(url, server)
        uploads, reads, stop_reads = _Uploads(url), [], threading.Event()
        threads = [threading.Thread(target=uploads.run) for _ in range(CLIENTS)]
        threads.append(
            threading.Thread(target=_reader_loop, args=(data_dir, env, stop_reads, reads))
        )
        for t in threads:
            t.start()
        time.sleep(1.0)  # uploads and reads under way before the CLI writer starts
        writer, writer_retries = _cli_writer(_manifest(tmp_path / "m1", entries[3:]), data_dir, env)
        uploads.stop.set()
        for t in threads[:CLIENTS]:
            t.join(DEADLINE_S)
        stop_reads.set()
        threads[-1].join(DEADLINE_S)
        counts = httpx.get(url + "/readyz").json()["counts"]
    finally:
        server.terminate()
        _, server_log = server.communicate(timeout=30)
    print(
        f"uploads {uploads.done}, 503 retries {uploads.retries}, reader runs {len(reads)}, "
        f"CLI writer retries {writer_retries}"
    )
    assert writer.returncode == 0, writer.stderr
    assert [r for r in reads if r[1] != 0] == [], "a reader failed"
    assert len(reads) >= 2
    assert set(uploads.statuses) <= {201, 503}, uploads.statuses
    assert uploads.done >= MIN_UPLOADS and uploads.statuses.count(201) == uploads.done
    assert uploads.retries >= 1, "no upload met the CLI writer's lock: the test did not overlap"
    assert b"Traceback" not in server_log, server_log.decode()[-2000:]
    assert counts["image"] == len(entries) + uploads.done
    check = _cli("verify", "--json", "--data-dir", str(data_dir), env=env)
    report = json.loads(check.stdout)
    assert check.returncode == 0 and report["ok"], report
