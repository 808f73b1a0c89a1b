"""HTTP API latency and throughput for text search, next to the same queries in-process.

    python -m benchmarks.http_bench                       # tiny-test model, 50 COCO photos
    python -m benchmarks.http_bench --model starter --photos 239

uvicorn runs in a subprocess on 127.0.0.1 (one worker); the client uses one keep-alive
connection per thread. Both sides share this machine's cores, so the HTTP figures include the
client's own cost: read them as an upper bound on the API overhead.
Writes benchmarks/results/http_bench.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

RESULTS = Path(__file__).parent / "results"
COCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"


def build_catalogue(data_dir: Path, model: str, photos: int) -> list[str]:
    """Index `photos` COCO photos with two captions each; return held-out captions as queries."""
    from indexer.pipeline import Ingestor
    from indexer.uploads import add_upload
    from retrieval.catalogue import Catalogue
    from retrieval.encoders import create_encoder

    entries = [json.loads(line) for line in (COCO / "items.jsonl").read_text().splitlines()]
    catalogue = Catalogue.open(data_dir)
    try:
        ingestor = Ingestor(catalogue, create_encoder(model))
        for e in entries[:photos]:
            add_upload(
                ingestor,
                (COCO / e["image"]).read_bytes(),
                Path(e["image"]).name,
                captions=e["captions"][:2],
            )
    finally:
        catalogue.close()
    return [c for e in entries for c in e["captions"][2:]]


def percentiles(latencies_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(latencies_s) * 1e3
    return {f"p{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 95, 99)}


def run_load(
    call: Callable[[str], None], queries: Sequence[str], concurrency: int, warmup: int = 10
) -> dict[str, Any]:
    for q in queries[:warmup]:
        call(q)

    def timed(q: str) -> float:
        t0 = time.perf_counter()
        call(q)
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(timed, queries))
    wall = time.perf_counter() - t0
    return {
        "requests": len(queries),
        "concurrency": concurrency,
        "throughput_rps": round(len(queries) / wall, 2),
        **percentiles(latencies),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, model: str, port: int, torch_threads: int = 1
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CROSSMEDIA_DATA_DIR": str(data_dir),
        "CROSSMEDIA_MODEL": model,
        "CROSSMEDIA_TORCH_THREADS": str(torch_threads),
        "CROSSMEDIA_HOST": "127.0.0.1",
        "CROSSMEDIA_RATE_LIMIT_PER_MINUTE": "0",
    }
    env.pop("CROSSMEDIA_API_KEYS", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.server:app_from_env",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout-keep-alive",
            "5",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
    )
    return wait_ready(proc, port)


def wait_ready(proc: subprocess.Popen, port: int, timeout_s: float = 120) -> subprocess.Popen:
    """Wait until the server answers /readyz (or exits, or the time runs out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"server did not become ready in {timeout_s:.0f} s")


def http_caller(base: str, k: int, target: str) -> Callable[[str], None]:
    import threading

    local = threading.local()

    def call(q: str) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base, timeout=60)
        r = client.post("/v1/search", json={"text": q, "k": k, "target": target})
        r.raise_for_status()

    return call


def library_caller(
    data_dir: Path, model: str, k: int, target: str
) -> tuple[Callable[[str], None], Any]:
    from retrieval.catalogue import Catalogue
    from retrieval.encoders import create_encoder
    from retrieval.rerank import select_reranker
    from retrieval.search import Query, SearchService

    catalogue = Catalogue.open(data_dir, create=False)
    encoder = create_encoder(model)
    # The same stack the server runs: its default re-ranks when the model ships a re-ranker.
    service = SearchService(catalogue, encoder, reranker=select_reranker("auto", encoder))

    def call(q: str) -> None:
        service.search(Query(text=q), target=target, k=k)

    return call, catalogue


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-test")
    ap.add_argument("--photos", type=int, default=50)
    ap.add_argument("--data-dir", type=Path, help="existing catalogue (default: build one)")
    ap.add_argument("--requests", type=int, default=200, help="per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target", default="image")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="intra-op threads, the same for the server and the in-process run",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "http_bench.json")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="cm-http-bench-")
    if args.data_dir is None:
        data_dir = Path(tmp.name) / "catalogue"
        queries = build_catalogue(data_dir, args.model, args.photos)
    else:
        data_dir = args.data_dir
        entries = [json.loads(x) for x in (COCO / "items.jsonl").read_text().splitlines()]
        queries = [c for e in entries for c in e["captions"]]
    queries = (queries * (args.requests // max(len(queries), 1) + 1))[: args.requests]

    import torch

    torch.set_num_threads(args.torch_threads)
    rows: list[dict[str, Any]] = []
    call, catalogue = library_caller(data_dir, args.model, args.k, args.target)
    try:
        for c in args.concurrency:
            rows.append({"mode": "library", **run_load(call, queries, c)})
    finally:
        catalogue.close()

    port = free_port()
    proc = start_server(data_dir, args.model, port, args.torch_threads)
    try:
        call = http_caller(f"http://127.0.0.1:{port}", args.k, args.target)
        for c in args.concurrency:
            rows.append({"mode": "http", **run_load(call, queries, c)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    tmp.cleanup()

    lib = {r["concurrency"]: r for r in rows if r["mode"] == "library"}
    for r in rows:
        base = lib[r["concurrency"]]
        r["p50_ratio_vs_library"] = round(r["p50"] / base["p50"], 2)
        r["throughput_ratio_vs_library"] = round(r["throughput_rps"] / base["throughput_rps"], 2)

    result = {
        "benchmark": "http_bench",
        "model": args.model,
        "gallery_photos": args.photos,
        "k": args.k,
        "target": args.target,
        "torch_threads": args.torch_threads,
        "rows": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": "python -m benchmarks.http_bench " + " ".join(argv or sys.argv[1:]),
        "note": "uvicorn (1 worker) and the client share the same cores.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    print(table)
    from benchmarks.results_md import replace_section

    replace_section(
        "http_bench",
        "## HTTP API latency\n\nReproduce: `.venv/bin/" + result["command"] + "`\n\n" + table,
    )


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"HTTP vs in-process text search ({result['model']}, {result['gallery_photos']} photos "
        f"+ captions, k={result['k']}, target={result['target']}, "
        f"{result['machine']['cpus']} CPUs, load average "
        f"{result['machine']['load_avg_1m_at_end']})",
        "",
        "| path | concurrency | requests | p50 ms | p95 ms | p99 ms | req/s | p50 × library "
        "| req/s × library |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['requests']} | {r['p50']} | {r['p95']} | "
            f"{r['p99']} | {r['throughput_rps']} | {r['p50_ratio_vs_library']} | "
            f"{r['throughput_ratio_vs_library']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
