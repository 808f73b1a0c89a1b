"""Re-ranker ablation on the held-out TEST splits: first stage vs re-ranked, side by side, one run.

    nice .venv/bin/python -m benchmarks.rerank_bench [--data ../shared/data] [--depths 20 50]
        [--model starter-v2 --sets flickr8k coco_mini tuxpaint cifar10 --out FILE]

For every data set and direction: R@1/R@5/R@10/mAP@10 of the first stage (exact cosine over the
split's gallery) and of the shipped re-ranker over the first stage's top `depth`, with gallery
size and chance. Latency: the added "rerank" stage per query exactly as the search service runs
it (token sets fetched from a SQLite store + one batched forward over the candidates), median and
p95. Storage: bytes per item of the token sets (and of the vector, for scale).
Prints a Markdown table and writes JSON to benchmarks/results/rerank_ablation.json.
Features of the locked towers come from the training jobs' shared cache (indexer/training/
features.py, under the user cache directory; --cache-dir overrides it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def measure_latency(
    reranker: Any, pt: Any, depth: int, n_queries: int, k: int = 10
) -> dict[str, float]:
    """Per-query time of the re-rank stage as the search service runs it (token sets and vectors
    fetched from SQLite, then `reranker.rerank`), in ms."""
    from retrieval.results import Candidates, Hit, RerankQuery
    from retrieval.store.records import NewItem
    from retrieval.store.store import Store

    task = pt.task
    with tempfile.TemporaryDirectory(prefix="rerank-bench-") as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        items = [
            NewItem(
                key=f"g{i}",
                modality=task.g_mod,
                content_hash=str(i),
                vector=task.g_vecs[i],
                tokens=task.g_tokens[i],
            )
            for i in range(len(task.g_vecs))
        ]
        ids = list(store.write_batch(items).added.values())
        times = []
        for q in range(min(n_queries, len(task.q_vecs))):
            cand = pt.order[q, :depth]
            hits = [
                Hit(
                    id=ids[c],
                    modality=task.g_mod,
                    score=float(pt.cos[q, c]),
                    first_stage_score=float(pt.cos[q, c]),
                )
                for c in cand
            ]
            t0 = time.perf_counter()
            hit_ids = [h.id for h in hits]
            candidates = Candidates(
                hits=hits,
                tokens=store.token_sets(hit_ids),
                vectors=store.vectors_for(hit_ids, len(task.q_vecs[q])),
            )
            reranker.rerank(
                RerankQuery(task.q_vecs[q], task.q_mod, task.q_tokens[q]), candidates, k
            )
            times.append((time.perf_counter() - t0) * 1e3)
        store.close()
    return {
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "queries": len(times),
        "task": task.name,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from indexer.train_reranker.tasks import evaluate, load_split_tasks, match_fn
    from indexer.training.features import FeatureCache
    from indexer.training.paths import cache_dir, data_root
    from retrieval.encoders import create_encoder
    from retrieval.rerank import reranker_for_space

    torch.set_num_threads(args.threads)
    encoder = create_encoder(args.model, device="cpu")
    reranker = reranker_for_space(encoder)
    if reranker is None:
        raise SystemExit(
            f"No re-ranker is shipped for {args.model}; train one with crossmedia train-reranker."
        )
    root = data_root(args.data)
    manifests = {name: root / name / "items.jsonl" for name in args.sets}
    features = FeatureCache(cache_dir("features", args.cache_dir))
    pts = load_split_tasks(encoder.towers, features, manifests, ("test",), reranker.cfg.max_tokens)[
        "test"
    ]
    tasks: dict[str, Any] = {}
    scale = float(encoder.model.logit_scale.exp())
    for depth in args.depths:
        res = evaluate(pts, match_fn(reranker.model), depth, [reranker.alpha], bank=reranker.bank)
        for name, r in res.items():
            row = tasks.setdefault(name, {"first_stage": r["first_stage"]})
            row[f"depth={depth}"] = r[f"alpha={reranker.alpha:g}"]
            if reranker.bank is not None:
                row[f"depth={depth} stage 1"] = r[f"alpha={reranker.alpha:g} stage 1"]
    if reranker.bank is not None:  # stage 2 alone, behind the plain first stage
        res = evaluate(pts, match_fn(reranker.model), max(args.depths), [0.0], bank=reranker.bank)
        for name, r in res.items():
            tasks[name]["bank only"] = r["alpha=0"]
    # Ablation rows at fixed, NOT selected weights (reported, never used to choose anything).
    fixed = [a / scale for a in args.fixed_alphas]
    res = evaluate(pts, match_fn(reranker.model), max(args.depths), fixed)
    for name, r in res.items():
        for a, x in zip(fixed, args.fixed_alphas, strict=True):
            tasks[name][f"fixed alpha={x:g}/scale"] = r[f"alpha={a:g}"]
    latency = {}
    lat_pt = next(p for p in pts if p.task.name == args.latency_task)
    stage1_only = copy.copy(reranker)
    stage1_only.bank = None
    for depth in args.depths:  # both variants back to back, so they share the machine's state
        latency[str(depth)] = measure_latency(reranker, lat_pt, depth, args.latency_queries)
        if reranker.bank is not None:
            latency[f"{depth} (stage 1 only)"] = measure_latency(
                stage1_only, lat_pt, depth, args.latency_queries
            )
    storage = {}
    for pt in pts:
        for mod, sets in ((pt.task.q_mod, pt.task.q_tokens), (pt.task.g_mod, pt.task.g_tokens)):
            s = storage.setdefault(mod, {"bytes": [], "tokens": []})
            s["bytes"] += [x.nbytes for x in sets]
            s["tokens"] += [len(x) for x in sets]
    storage = {
        m: {
            "mean_bytes": float(np.mean(v["bytes"])),
            "max_bytes": int(np.max(v["bytes"])),
            "mean_tokens": float(np.mean(v["tokens"])),
            "max_tokens": int(np.max(v["tokens"])),
            "vector_bytes": encoder.dim * 4,
        }
        for m, v in storage.items()
    }
    return {
        "reranker": reranker.version,
        "space": reranker.space_key,
        "alpha": reranker.alpha,
        "bank": None
        if reranker.bank is None
        else {"k": reranker.bank.k, "beta": reranker.bank.beta, "window": reranker.bank.window},
        "split": "test",
        "depths": args.depths,
        "fixed_alphas": args.fixed_alphas,
        "logit_scale": scale,
        "k": 10,
        "tasks": tasks,
        "latency": latency,
        "storage": storage,
        "threads": args.threads,
        "load_average": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "command": "python -m benchmarks.rerank_bench " + " ".join(sys.argv[1:]),
    }


def markdown(result: dict[str, Any]) -> str:
    depths = result["depths"]
    lines = [
        f"Re-ranker `{result['reranker']}` (alpha {result['alpha']:.4f}; bank {result.get('bank')}) vs first "
        "stage, TEST splits, k = 10",
        "",
        "| task | gallery | queries | chance R@1 | stage | R@1 | R@5 | R@10 | mAP@10 |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, r in result["tasks"].items():
        f = r["first_stage"]
        rows = [("first stage", f)]
        for d in depths:
            if f"depth={d} stage 1" in r:
                rows.append((f"stage 1 (cross-attention) @{d}", r[f"depth={d} stage 1"]))
            rows.append((f"re-ranked @{d}", r[f"depth={d}"]))
        if "bank only" in r:
            rows.append(("stage 2 (bank) alone", r["bank only"]))
        rows += [
            (f"ablation @{max(depths)}, alpha={x:g}/scale", r[f"fixed alpha={x:g}/scale"])
            for x in result["fixed_alphas"]
        ]
        for j, (stage, m) in enumerate(rows):
            head = (
                f"| {name} | {f['gallery']} | {f['queries']} | {f['chance_R@1']:.3f}"
                if j == 0
                else "| | | |"
            )
            delta = "" if j == 0 else f" ({m['R@1'] - f['R@1']:+.3f})"
            lines.append(
                f"{head} | {stage} | {m['R@1']:.3f}{delta} | {m['R@5']:.3f} | {m['R@10']:.3f} | "
                f"{m['mAP@10']:.3f} |"
            )
    lines += [
        "",
        f"Added latency per query (the service's rerank stage: token and vector fetch from SQLite, "
        f"one batched forward, the bank correction), {result['threads']} torch thread(s), "
        f"load average {result.get('load_average', '?')}:",
        "",
        "| depth | median ms | p95 ms | queries | task |",
        "|---:|---:|---:|---:|---|",
    ]
    for d, lat in result["latency"].items():
        lines.append(
            f"| {d} | {lat['median_ms']:.1f} | {lat['p95_ms']:.1f} | {lat['queries']} | {lat['task']} |"
        )
    lines += [
        "",
        "| modality | mean token bytes | max token bytes | mean tokens | vector bytes |",
        "|---|---:|---:|---:|---:|",
    ]
    for m, s in result["storage"].items():
        lines.append(
            f"| {m} | {s['mean_bytes']:.0f} | {s['max_bytes']} | {s['mean_tokens']:.1f} | {s['vector_bytes']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="default: $CROSSMEDIA_TRAIN_DATA or ../shared/data beside the checkout",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="default: the user cache directory")
    p.add_argument("--model", default="starter", help="the starter model whose re-ranker runs")
    p.add_argument("--sets", nargs="+", default=["coco_mini", "tuxpaint", "cifar10"])
    p.add_argument("--depths", nargs="+", type=int, default=[20, 50])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--fixed-alphas",
        nargs="*",
        type=float,
        default=[1.0, 3.0],
        help="extra ablation rows at these alpha x logit_scale (not selected, never tuned)",
    )
    p.add_argument("--latency-task", default="coco_mini/text_to_image")
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "rerank_ablation.json"
    )
    args = p.parse_args()
    result = run(args)
    print(markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
