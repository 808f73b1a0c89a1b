"""A catalogue of 10k, 100k and 1M items on this machine: import rate, open time, index build,
query latency (exact and automatic) with recall@10 against exact search, HTTP text search and
upload latency, peak RSS and disk; the ANN peers on the same vectors (benchmarks/scale_peers.py);
a kill -9 in a burst of uploads at the largest size.

    python -m benchmarks.scale --sizes 10000,100000,1000000 --peers --kill

Vectors: benchmarks/scale_data.py (clustered, cached). Prints a Markdown table; writes
benchmarks/results/scale.json and, with --peers, benchmarks/results/scale_qps_recall.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from api.process import passive_openmp
from benchmarks import scale_data as data
from benchmarks import scale_http, scale_peers
from benchmarks.http_bench import percentiles

RESULTS = Path(__file__).parent / "results"
CLI = [sys.executable, "-m", "api.cli"]


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Like run_timed, with the child's own peak RSS (from wait4, not the whole tree's)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024, out


def fresh_open_s(data_dir: Path) -> float:
    """Opening the catalogue and loading the image index in a new process (imports excluded)."""
    code = (
        "import time, json; from retrieval.catalogue import Catalogue; t = time.perf_counter(); "
        f"c = Catalogue.open({str(data_dir)!r}, create=False); c.index('image'); "
        "print(json.dumps(time.perf_counter() - t))"
    )
    return float(json.loads(run_measured([sys.executable, "-c", code])[2]))


def positions(data_dir: Path) -> np.ndarray:
    """id -> row of vectors.npy (keys are v<row>), -1 for anything else."""
    from sqlalchemy import select

    from retrieval.catalogue import Catalogue
    from retrieval.store.models import Item

    with Catalogue.open(data_dir, create=False) as cat, cat.store.engine.connect() as conn:
        rows = conn.execute(select(Item.id, Item.key).where(Item.modality == "image")).all()
    table = np.full(max(i for i, _ in rows) + 1, -1, np.int64)
    for i, key in rows:
        if key.startswith("v") and key[1:].isdigit():
            table[i] = int(key[1:])
    return table


def library(data_dir: Path, vecs: np.ndarray, qs: np.ndarray, truth: np.ndarray, pos: np.ndarray) -> dict[str, Any]:  # fmt: skip
    import faiss

    from retrieval.catalogue import Catalogue
    from retrieval.index.faiss_settings import tune_faiss

    tune_faiss()
    out: dict[str, Any] = {}
    with Catalogue.open(data_dir, create=False) as cat:
        index = cat.index("image")
        times, found = [], []
        for q in qs:
            t = time.perf_counter()
            ids = index.search(q[None], 10)[1]
            times.append(time.perf_counter() - t)
            found.append(pos[ids[0]])
        out["auto"] = {"factory": index.factory, **percentiles(times),
                       "recall": data.recall(np.stack(found), truth)}  # fmt: skip
        out["peers_ours"] = scale_peers.ours(index, lambda ids: pos[ids], qs, truth)
    flat = faiss.IndexFlatIP(vecs.shape[1])
    flat.add(np.ascontiguousarray(vecs))
    times = []
    for q in qs[:100]:
        t = time.perf_counter()
        flat.search(q[None], 10)
        times.append(time.perf_counter() - t)
    out["exact"] = percentiles(times)
    batch = qs[:200]
    t = time.perf_counter()
    flat.search(batch, 10)
    out["exact_batch200_qps"] = round(len(batch) / (time.perf_counter() - t), 1)
    t = time.perf_counter()
    np.argpartition(-(batch @ vecs.T), 10, axis=1)
    out["matmul_batch200_qps"] = round(len(batch) / (time.perf_counter() - t), 1)
    return out


def text_recall(vecs: np.ndarray, got: dict[str, list[int]], pos: np.ndarray) -> float:
    """Recall@10 of the server's first stage for real text queries, against exact search."""
    from retrieval.encoders import create_encoder

    texts = list(got)
    qv = create_encoder(data.MODEL).encode_texts(texts)
    truth = data.exact_top(np.ascontiguousarray(qv, np.float32), vecs)
    found = np.stack([pos[np.asarray(got[t] + [0] * (10 - len(got[t])))] for t in texts])
    return data.recall(found, truth)


def disk_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1)


def run_size(n: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    vectors, manifest = data.dataset(n)
    vecs = np.load(vectors, mmap_mode="r")
    data_dir = work / f"cat-{n}"
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [*CLI, "import-vectors", str(vectors), "--manifest", str(manifest), "--data-dir",
           str(data_dir), "--model", data.MODEL, "--json"]  # fmt: skip
    wall, rss, out = run_measured(cmd)
    report = json.loads(out)
    row: dict[str, Any] = {"n": n, "import_s": round(wall, 1), "import_rss_mb": round(rss),
                           "import_rate": round(n / wall), "import": report}  # fmt: skip
    row["open_s"] = round(fresh_open_s(data_dir), 2)
    search_cmd = [*CLI, "search", "--text", "a dog running on the beach", "--target", "image",
                  "--data-dir", str(data_dir), "--json"]  # fmt: skip
    row["cli_search_s"], row["cli_search_rss_mb"], _ = run_measured(search_cmd)
    qs = data.queries(300)
    truth = data.exact_top(qs, np.ascontiguousarray(vecs))
    pos = positions(data_dir)
    row["library"] = library(data_dir, np.asarray(vecs), qs, truth, pos)
    http = scale_http.serve_and_measure(data_dir, args.uploads, upload_skip=0)
    row["http"] = {k: v for k, v in http.items() if k != "search_ids"}
    row["http"]["text_recall"] = round(text_recall(np.asarray(vecs), http["search_ids"], pos), 4)
    row["disk_mb"] = disk_mb(data_dir)
    if args.kill and n == max(args.sizes):
        row["kill"] = scale_http.kill_during_uploads(data_dir, skip=args.uploads)
    if args.peers and n == max(args.sizes):
        nlist = report["index"]["image"]["factory"].split(",")[0][3:].split("_")[0]
        peers = scale_peers.faiss_ivf(
            np.asarray(vecs), int(nlist) if nlist.isdigit() else 1024, qs, truth
        )
        peers += scale_peers.faiss_hnsw(np.asarray(vecs), qs, truth)
        peers += scale_peers.hnswlib_peer(np.asarray(vecs), qs, truth)
        row["peers"] = row["library"].pop("peers_ours") + peers
        scale_peers.plot(row["peers"], RESULTS / "scale_qps_recall.png", n)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| items | import s (rate/s, peak RSS) | store writes/s | index | build s (overlapped) | open s | CLI search s | "
            "exact p50/p95 ms | auto p50/p95 ms | auto recall@10 | exact batch-200 q/s (matmul) | "
            "HTTP text p50/p95 ms (recall@10) | upload p50/p95 ms | disk MB |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lib, http, idx = r["library"], r["http"], r["import"]["index"]["image"]
        lines.append(
            f"| {r['n']:,} | {r['import_s']} ({r['import_rate']:,}, {r['import_rss_mb']} MB) | "
            f"{r['n'] / r['import']['seconds']['write']:,.0f} | {idx['factory']} | {idx.get('build_s', r['import']['seconds']['index']):.1f} | {r['open_s']} | "
            f"{r['cli_search_s']:.1f} | {lib['exact']['p50']:.2f}/{lib['exact']['p95']:.2f} | "
            f"{lib['auto']['p50']:.2f}/{lib['auto']['p95']:.2f} | {lib['auto']['recall']:.3f} | "
            f"{lib['exact_batch200_qps']} ({lib['matmul_batch200_qps']}) | "
            f"{http['search_ms']['p50']:.1f}/{http['search_ms']['p95']:.1f} ({http['text_recall']:.3f}) | "
            f"{http['upload_ms']['p50']:.0f}/{http['upload_ms']['p95']:.0f} | {r['disk_mb']} |"
        )
    return "\n".join(lines)


def peers_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| method | knob | recall@10 | q/s (1 thread) | build s |", "|---|---|---|---|---|"]
    for r in rows:
        if "qps" in r:
            lines.append(
                f"| {r['method']} | {r['knob']} | {r['recall']:.3f} | {r['qps']:,.0f} | {r['build_s']} |"
            )
        else:
            lines.append(f"| {r['method']} | skipped: {r.get('skipped')} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--uploads", type=int, default=20)
    ap.add_argument(
        "--peers", action="store_true", help="FAISS IVF/HNSW and hnswlib at the largest size"
    )
    ap.add_argument(
        "--kill", action="store_true", help="kill -9 in a burst of uploads at the largest size"
    )
    ap.add_argument("--work", type=Path, default=data.cache_root() / "catalogues")
    args = ap.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    passive_openmp()  # as the crossmedia CLI and server configure themselves (api/process.py)
    RESULTS.mkdir(exist_ok=True)
    rows = []
    for n in args.sizes:
        rows.append(run_size(n, args.work, args))
        print(markdown(rows[-1:]), flush=True)
    result = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows}
    (RESULTS / "scale.json").write_text(json.dumps(result, indent=2, default=float))
    print(markdown(rows))
    for r in rows:
        if "peers" in r:
            print(peers_markdown(r["peers"]))
        if "kill" in r:
            print("kill -9 during uploads:", json.dumps(r["kill"]))


if __name__ == "__main__":
    main()
