"""Load test of the HTTP API: 16 concurrent search clients (+ a few uploaders) for a bounded time.

    python -m benchmarks.load_test                          # tiny-test model, 50 COCO photos, 30 s
    python -m benchmarks.load_test --model starter --seconds 60

The server is the real `crossmedia serve` in a subprocess on 127.0.0.1 (one worker, the slow-client
timeouts and every limit as shipped, rate limit off); each client thread keeps one keep-alive
connection and sends text searches back to back (held-out COCO captions, seeded order); the
uploaders add a new seeded PNG with a caption every second. Client and server share this
machine's cores. Prints a Markdown table and writes benchmarks/results/load_test.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.http_bench import build_catalogue, free_port, percentiles, wait_ready

RESULTS = Path(__file__).parent / "results"
CLI = str(Path(sys.executable).parent / "crossmedia")


def start_server(data_dir: Path, model: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CROSSMEDIA_RATE_LIMIT_PER_MINUTE": "0", "CROSSMEDIA_TORCH_THREADS": "1"}
    env.pop("CROSSMEDIA_API_KEYS", None)
    proc = subprocess.Popen(
        [CLI, "serve", "--data-dir", str(data_dir), "--port", str(port), "--model", model],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait_ready(proc, port)


class Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def add(self, seconds: float, error: str | None) -> None:
        with self._lock:
            self.latencies.append(seconds)
            if error:
                self.errors.append(error)

    def summary(self, wall_s: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": len(self.latencies),
            "errors": len(self.errors),
            "throughput_rps": round(len(self.latencies) / wall_s, 2),
        }
        if self.latencies:
            out.update(percentiles(self.latencies))
        out["error_samples"] = sorted(set(self.errors))[:5]
        return out


def timed_call(rec: Recorder, send: Any, ok: int) -> None:
    t0 = time.perf_counter()
    try:
        r = send()
        error = None if r.status_code == ok else f"{r.status_code}: {r.text[:120]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    rec.add(time.perf_counter() - t0, error)


def searcher(base: str, queries: Sequence[str], offset: int, until: float, rec: Recorder) -> None:
    with httpx.Client(base_url=base, timeout=60) as c:
        i = offset
        while time.monotonic() < until:
            q = queries[i % len(queries)]
            timed_call(rec, lambda q=q: c.post("/v1/search", json={"text": q, "k": 10}), 200)
            i += 1


def uploader(base: str, worker: int, until: float, rec: Recorder) -> None:
    from PIL import Image

    with httpx.Client(base_url=base, timeout=60) as c:
        n = 0
        while time.monotonic() < until:
            pixels = np.random.default_rng([worker, n]).integers(0, 255, (64, 64, 3), np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            files = {"file": (f"load{worker}-{n}.png", buf.getvalue(), "image/png")}
            timed_call(
                rec,
                lambda f=files, n=n: c.post(  # type: ignore[misc]
                    "/v1/items", files=f, data={"captions": f"load test upload {worker} {n}"}
                ),
                201,
            )
            n += 1
            time.sleep(1.0)


def run(
    base: str, queries: list[str], clients: int, uploaders: int, seconds: float
) -> dict[str, Any]:
    searches, uploads = Recorder(), Recorder()
    order = list(np.random.default_rng(0).permutation(len(queries)))
    shuffled = [queries[i] for i in order]
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=searcher, args=(base, shuffled, 97 * i, until, searches))
        for i in range(clients)
    ]
    threads += [
        threading.Thread(target=uploader, args=(base, w, until, uploads)) for w in range(uploaders)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    return {
        "searches": searches.summary(wall),
        "uploads": uploads.summary(wall),
        "wall_s": round(wall, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        "| requests | clients | count | rps | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, who in (("search", result["clients"]), ("upload", result["uploaders"])):
        s = result[name + "es" if name == "search" else name + "s"]
        rows.append(
            f"| {name} | {who} | {s['requests']} | {s['throughput_rps']} | "
            f"{s.get('p50', '-')} | {s.get('p95', '-')} | {s.get('p99', '-')} | "
            f"{s['errors']} |"
        )
    head = (
        f"Load test: model {result['model']}, {result['photos']} photos, "
        f"{result['seconds']} s, {result['cpus']} CPUs ({result['machine']})"
    )
    return head + "\n\n" + "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny-test")
    p.add_argument("--photos", type=int, default=50)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--uploaders", type=int, default=2)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=RESULTS / "load_test.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crossmedia-load-") as tmp:
        data_dir = Path(tmp) / "data"
        queries = build_catalogue(data_dir, args.model, args.photos)
        port = free_port()
        server = start_server(data_dir, args.model, port)
        try:
            result = run(
                f"http://127.0.0.1:{port}", queries, args.clients, args.uploaders, args.seconds
            )
        finally:
            server.terminate()
            server.wait(30)
    result.update(
        model=args.model,
        photos=args.photos,
        clients=args.clients,
        uploaders=args.uploaders,
        seconds=args.seconds,
        cpus=os.cpu_count(),
        machine=platform.platform(),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
