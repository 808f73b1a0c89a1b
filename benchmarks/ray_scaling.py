"""Ingestion on Ray against the local pipeline: the same manifest, side by side in one run.

    python -m benchmarks.ray_scaling [--manifest ../shared/data/coco_mini/items.jsonl]
        [--limit 239] [--model starter] [--batch-size 16] [--repeat 2] [--no-pin] [--no-results]

Three configurations, each in a fresh process, on the same entries (media read in place):
  local   the local pipeline (`Ingestor`), one torch thread
  ray-1   a local Ray cluster with 1 CPU: one embed actor (one torch thread), decode tasks
  ray-2   a local Ray cluster with 2 CPUs: two embed actors (one torch thread each)
Each is pinned to as many cores as it has workers (local and ray-1 to one, ray-2 to two): "N
workers" means N cores, no spare core for free (--no-pin lifts it). Rounds are interleaved and
the best of each configuration kept (others' load on a shared machine only slows a run). Steady
throughput leaves out starting (model load; for Ray also cluster and actors), reported apart.
CPU seconds of every process of the run from /proc (driver, embed actors, decode workers, Ray's
daemons) and the CPU others took on the same cores meanwhile say where the time goes. Prints a
Markdown table; writes benchmarks/results/ray_scaling.json and its RESULTS.md section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.ray_scaling_cpu import busy_cores, cpu_by_role, process_cpu
from benchmarks.results_md import load_note, replace_section

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT.parent / "shared" / "data" / "coco_mini" / "items.jsonl"
CONFIGS = [("local", 1), ("ray", 1), ("ray", 2)]


# -- one configuration, in its own process ---------------------------------------------------------
def run_one(kind: str, workers: int, manifest: Path, model: str, batch: int) -> dict[str, Any]:
    import torch

    from indexer.sources import ManifestSource
    from retrieval.catalogue import Catalogue

    torch.set_num_threads(1)
    source = ManifestSource(manifest, [DEFAULT_MANIFEST.parents[1]])
    with tempfile.TemporaryDirectory() as tmp, Catalogue.open(Path(tmp) / "cat") as cat:
        t0 = time.perf_counter()
        ingest, close = _starter(kind, workers, cat, model, batch)
        start_s = time.perf_counter() - t0
        before, busy = process_cpu(os.getpid()), busy_cores(os.sched_getaffinity(0))
        t = time.perf_counter()
        report = ingest(source)
        wall = time.perf_counter() - t
        cpu, procs = cpu_by_role(before, process_cpu(os.getpid()))
        busy = busy_cores(os.sched_getaffinity(0)) - busy
        close()
        counts = cat.counts()
    media = counts.get("image", 0) + counts.get("audio", 0)
    return {
        "config": kind if kind == "local" else f"ray-{workers}",
        "workers": workers,
        "cores": sorted(os.sched_getaffinity(0)),
        "media": media,
        "texts": counts.get("text", 0),
        "start_s": round(start_s, 2),
        "wall_s": round(wall, 2),
        "items_per_s": media / wall,
        "stage_s": {k: round(v, 2) for k, v in report.seconds.items()},
        "cpu_s": cpu,
        # CPU time others' processes took on the same cores meanwhile: the run could not use it
        "others_cpu_s": round(max(busy - sum(cpu.values()), 0.0), 2),
        "cpu_s_by_process": procs,
        "failed": len(report.failed),
    }


def _starter(kind: str, workers: int, cat: Any, model: str, batch: int) -> tuple[Any, Any]:
    """(ingest(source) -> report, close()) for one configuration, started (model loaded)."""
    if kind == "local":
        from indexer.pipeline import Ingestor
        from retrieval.encoders import create_encoder

        ing = Ingestor(cat, create_encoder(model, device="cpu"), batch_size=batch)
        return (lambda src: ing.ingest(src, progress=False)), (lambda: None)
    import ray

    from indexer.ray_cluster import RayOptions
    from indexer.ray_ingest import RayIngestor

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    ri = RayIngestor(cat, model, RayOptions(workers=workers, threads=1), batch_size=batch)
    ri.start()

    def close() -> None:
        ri.close()
        ray.shutdown()

    return (lambda src: ri.ingest(src, progress=False)), close


# -- the comparison ------------------------------------------------------------------------------
def child(kind: str, workers: int, args: argparse.Namespace, manifest: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.ray_scaling", "--one", kind, "--workers", str(workers)]
    cmd += [
        "--manifest",
        str(manifest),
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
    ]
    pin = [] if args.no_pin else ["taskset", "-c", ",".join(str(c) for c in range(workers))]
    out = subprocess.run(pin + cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{kind} x{workers} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sliced(manifest: Path, limit: int, into: Path) -> Path:
    """The first `limit` entries of `manifest`, their media paths made absolute (read in place)."""
    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines()[:limit]:
        obj = json.loads(line)
        for k in ("image", "audio"):
            if k in obj:
                obj[k] = str((manifest.parent / obj[k]).resolve())
        rows.append(json.dumps(obj))
    into.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return into


def cpu_ms_per_photo(row: dict[str, Any]) -> float:
    return 1e3 * sum(row["cpu_s"].values()) / max(row["media"], 1)


def own_cores_rate(row: dict[str, Any]) -> float:
    """Estimated photos/s had the run had its cores to itself: the wall time less the CPU time
    other processes took on them (spread over the cores), never below its own CPU time."""
    n, ours = len(row["cores"]), sum(row["cpu_s"].values())
    return row["media"] / max(row["wall_s"] - row["others_cpu_s"] / n, ours / n)


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    local, one, two = (r["items_per_s"] for r in rows)
    c_local, c_one, c_two = (cpu_ms_per_photo(r) for r in rows)
    e_local, e_one, e_two = (own_cores_rate(r) for r in rows)
    return {
        "est_ray1_vs_local": e_one / e_local,
        "est_efficiency_2": e_two / (2 * e_one),
        "ray1_vs_local": one / local,  # 1.0: no overhead
        "ray_overhead": 1 - one / local,
        "efficiency_2": two / (2 * one),
        "speedup_2_vs_local": two / local,
        # The same in CPU time, which others' processes on the cores do not change:
        "ray1_cpu_overhead": c_one / c_local - 1,
        "cpu_efficiency_2": c_one / c_two,
    }


def table(rows: list[dict[str, Any]], s: dict[str, float], env: dict[str, Any]) -> str:
    lines = [
        f"`{env['manifest']}`, first {rows[0]['media']} photos with their {rows[0]['texts']} "
        f"captions, model `{env['model']}`, batch {env['batch_size']}, one torch thread per "
        f"worker, {env['pinning']}; Ray {env['ray']}; {env['load']}.",
        "",
        "| config | cores | start s | wall s | photos/s (each round) | decode s | encode s "
        "| write s "
        "| CPU s: driver | embed actors | decode workers | Ray daemons | CPU ms/photo "
        "| others' CPU s on these cores | est. photos/s, cores to itself |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        st, cpu = r["stage_s"], r["cpu_s"]
        rounds = ", ".join(f"{x:.2f}" for x in r["all_items_per_s"])
        lines.append(
            f"| {r['config']} | {len(r['cores'])} | {r['start_s']:.1f} | {r['wall_s']:.1f} | "
            f"**{r['items_per_s']:.2f}** ({rounds}) | {st['decode']:.1f} | {st['encode']:.1f} | "
            f"{st['write']:.1f} | {cpu.get('driver', 0):.1f} | {cpu.get('embed actors', 0):.1f} "
            f"| {cpu.get('decode workers', 0):.1f} | {cpu.get('ray daemons', 0):.1f} "
            f"| {cpu_ms_per_photo(r):.0f} | {r['others_cpu_s']:.1f} | {own_cores_rate(r):.2f} |"
        )
    lines += [
        "",
        f"Ray with 1 worker: {s['ray1_vs_local']:.2f} x the local pipeline's throughput "
        f"(overhead {100 * s['ray_overhead']:.0f}%). 2 workers: scaling efficiency "
        f"{s['efficiency_2']:.2f} (throughput with 2 / (2 x throughput with 1)), "
        f"{s['speedup_2_vs_local']:.2f} x local. In CPU time per photo (less inflated by other "
        "processes on the cores than wall time is): Ray with 1 worker costs "
        f"{100 * s['ray1_cpu_overhead']:+.0f}% against local, and 2 workers do the work at "
        f"efficiency {s['cpu_efficiency_2']:.2f} "
        "(CPU per photo with 1 / with 2). Estimated with the cores to itself (last column): Ray "
        f"with 1 worker {s['est_ray1_vs_local']:.2f} x local, 2 workers at efficiency "
        f"{s['est_efficiency_2']:.2f}.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--limit", type=int, default=239, help="Entries of the manifest to index.")
    ap.add_argument("--model", default="starter")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2, help="Rounds; the best of each is kept.")
    ap.add_argument("--no-pin", action="store_true", help="Do not pin each run to its cores.")
    ap.add_argument("--no-results", action="store_true", help="Do not rewrite RESULTS.md.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ray_scaling.json")
    ap.add_argument("--one", choices=["local", "ray"], help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child: one configuration, one JSON line
        row = run_one(args.one, args.workers, args.manifest, args.model, args.batch_size)
        print(json.dumps(row))
        return
    if not args.manifest.is_file():
        raise SystemExit(f"Manifest {args.manifest} not found (real data lives in ../shared/data).")
    rows, s, env, runs = compare(args)
    text = table(rows, s, env)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"env": env, "rows": rows, "summary": s, "runs": runs}, indent=2)
    )
    if not args.no_results:
        cmd = "`.venv/bin/python -m benchmarks.ray_scaling" + (" --no-pin`" if args.no_pin else "`")
        replace_section(
            "ray_scaling", f"## Ingestion on Ray: scaling\n\nReproduce: {cmd}\n\n{text}"
        )


def compare(args: argparse.Namespace) -> tuple[list[dict], dict, dict, list[list[dict]]]:
    """Every configuration, `args.repeat` interleaved rounds: (best rows, summary, env, runs)."""
    import ray

    env = {
        "manifest": "/".join(args.manifest.parts[-3:]),
        "model": args.model,
        "batch_size": args.batch_size,
        "pinning": "not pinned" if args.no_pin else "each run pinned to its cores (taskset)",
        "ray": ray.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    before = load_note()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = sliced(args.manifest, args.limit, Path(tmp) / "items.jsonl")
        runs = [[child(kind, n, args, manifest) for kind, n in CONFIGS] for _ in range(args.repeat)]
    # Best of the interleaved rounds: other processes on a shared machine only ever slow a run.
    rows = [max(col, key=lambda r: r["items_per_s"]) for col in zip(*runs, strict=True)]
    for row, col in zip(rows, zip(*runs, strict=True), strict=True):
        row["all_items_per_s"] = [round(r["items_per_s"], 2) for r in col]
    env["load"] = f"load before: {before}; after: {load_note()}"
    return rows, summary(rows), env, runs


if __name__ == "__main__":
    main()
