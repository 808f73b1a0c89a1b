"""Ingestion throughput on a real manifest: items/s with decode, encode and write time separate.

    python -m benchmarks.ingest_throughput [--manifest ../shared/data/coco_mini/items.jsonl]
        [--models starter tiny-test] [--batch-size 32]

Each model indexes the manifest into a fresh temporary catalogue, in this one process, so the
rows are comparable. Prints a Markdown table and writes benchmarks/results/ingest_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results_md import load_note, replace_section
from indexer.pipeline import Ingestor
from indexer.sources import open_source
from retrieval.catalogue import Catalogue
from retrieval.encoders import create_encoder

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = ROOT.parent / "shared" / "data" / "coco_mini" / "items.jsonl"


def run(manifest: Path, model: str, batch_size: int) -> dict:
    encoder = create_encoder(model)
    with tempfile.TemporaryDirectory() as tmp, Catalogue.open(Path(tmp) / "cat") as cat:
        t0 = time.perf_counter()
        report = Ingestor(cat, encoder, batch_size=batch_size).ingest(
            open_source(manifest), progress=False
        )
        wall = time.perf_counter() - t0
        counts = cat.counts()
    media = counts.get("image", 0) + counts.get("audio", 0)
    s = report.seconds
    return {
        "model": model,
        "batch_size": batch_size,
        "entries": report.entries,
        "media": media,
        "texts": counts.get("text", 0),
        "wall_s": wall,
        "items_per_s": media / wall,
        "decode_s": s["decode"],
        "encode_s": s["encode"],
        "write_s": s["write"],
        "read_s": s["read"],
        "decode_ms_per_item": 1e3 * s["decode"] / max(media, 1),
        "encode_ms_per_item": 1e3 * s["encode"] / max(media, 1),
        "failed": len(report.failed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    ap.add_argument("--models", nargs="+", default=["starter", "tiny-test"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "ingest_throughput.json"
    )
    ap.add_argument("--no-results", action="store_true", help="Do not rewrite RESULTS.md.")
    args = ap.parse_args()
    if not args.manifest.is_file():
        raise SystemExit(f"Manifest {args.manifest} not found (real data lives in ../shared/data).")
    rows = [run(args.manifest, m, args.batch_size) for m in args.models]
    env = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "manifest": str(args.manifest.relative_to(args.manifest.parents[2])),
        "load": load_note(),
    }
    lines = [
        f"Ingestion of `{env['manifest']}` ({rows[0]['entries']} entries: each image and its "
        f"captions), batch {args.batch_size}, {env['threads']} torch threads, {env['load']}.",
        "",
        "| model | media items | texts | wall s | media items/s | decode ms/item | encode s (media+text) | write s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['media']} | {r['texts']} | {r['wall_s']:.1f} | "
            f"{r['items_per_s']:.1f} | {r['decode_ms_per_item']:.1f} | {r['encode_s']:.1f} | "
            f"{r['write_s']:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    if not args.no_results:
        replace_section(
            "ingest_throughput",
            "## Ingestion throughput\n\nReproduce: "
            "`.venv/bin/python -m benchmarks.ingest_throughput`\n\n" + table,
        )


if __name__ == "__main__":
    main()
