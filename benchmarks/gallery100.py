"""The issue-16 protocol on our own data: 100-photo galleries with their 5 captions each.

    nice .venv/bin/python -m benchmarks.gallery100 [--models starter,starter-v2] [--draws 4]

The held-out set the issue measures (100 everyday photos, 5 human captions each, kept by the
team) is not here. Its nearest stand-in is flickr8k's TEST split (everyday photos, 5 human
captions each): it is cut into disjoint galleries of 100 photos (seeded shuffle), each written as
a manifest and run through `crossmedia bench recall` (the real ingestion and search path, honest
gallery, default mode), first stage (`--no-rerank`) and re-ranked (`--rerank`) where the model
ships a re-ranker. Mean and spread over the draws are printed per model; results go to
benchmarks/results/gallery100.json and the "100-photo galleries" section of RESULTS.md is
written from them by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "flickr8k"
KEYS = ("R@1", "R@5", "R@10")


def draws(n_draws: int, size: int = 100, seed: int = 0) -> list[list[dict]]:
    """Disjoint `size`-photo galleries from flickr8k's test split (seeded)."""
    from retrieval.splits import split_of

    rows = [json.loads(line) for line in (DATA / "items.jsonl").read_text().splitlines()]
    test = [r for r in rows if split_of(r["id"]) == "test"]
    random.Random(seed).shuffle(test)
    n = min(n_draws, len(test) // size)
    return [test[i * size : (i + 1) * size] for i in range(n)]


def run_draw(
    rows: list[dict], model: str, encoder: object, rerank: bool, folder: Path
) -> dict[str, dict]:
    from indexer.bench_recall import run_recall_bench

    manifest = folder / "items.jsonl"
    manifest.write_text(
        "".join(json.dumps({**r, "image": str(DATA / r["image"])}) + "\n" for r in rows)
    )
    result = run_recall_bench(manifest, model=model, rerank=rerank, progress=False, encoder=encoder)
    return {
        name: {k: t[k] for k in (*KEYS, "queries", "gallery")}
        for name, t in result["tasks"].items()
    }


def summarise(per_draw: list[dict[str, dict]]) -> dict[str, dict]:
    out = {}
    for task in per_draw[0]:
        vals = {k: [d[task][k] for d in per_draw] for k in KEYS}
        out[task] = {
            **{k: float(np.mean(v)) for k, v in vals.items()},
            **{f"{k} sd": float(np.std(v)) for k, v in vals.items()},
            "queries": per_draw[0][task]["queries"],
            "gallery": per_draw[0][task]["gallery"],
            "draws": len(per_draw),
        }
    return out


def main() -> None:
    from retrieval.encoders import create_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="starter,starter-v2")
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/gallery100.json")
    args = ap.parse_args()
    os.environ["CROSSMEDIA_MEDIA_ROOTS"] = str(DATA)  # the manifests point into shared/data
    galleries = draws(args.draws)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="gallery100-") as tmp:
        for model in args.models.split(","):
            encoder = create_encoder(model)
            for rerank in (False, True):
                if rerank and not _has_reranker(encoder):
                    continue
                per = []
                for i, rows in enumerate(galleries):
                    folder = Path(tmp) / f"{model}-{rerank}-{i}"
                    folder.mkdir()
                    per.append(run_draw(rows, model, encoder, rerank, folder))
                key = f"{model} {'re-ranked' if rerank else 'first stage'}"
                results[key] = summarise(per)
                print(_table(key, results[key]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"draws": len(galleries), "results": results}, indent=1))


def _has_reranker(encoder: object) -> bool:
    from retrieval.rerank import reranker_for_space

    try:
        return reranker_for_space(encoder) is not None  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - a missing or mismatched artifact: say so, skip
        print(f"\nno re-ranker for {encoder.space.key()}: {exc}")  # type: ignore[attr-defined]
        return False


def _table(key: str, tasks: dict[str, dict]) -> str:
    lines = [
        f"\n{key}",
        "| task | R@1 | R@5 | R@10 | queries | gallery | draws |",
        "|---" * 7 + "|",
    ]
    for task, m in tasks.items():
        cells = " | ".join(f"{m[k]:.3f} ± {m[k + ' sd']:.3f}" for k in KEYS)
        lines.append(f"| {task} | {cells} | {m['queries']} | {m['gallery']} | {m['draws']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
