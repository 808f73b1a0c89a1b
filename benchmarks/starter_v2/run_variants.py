"""Train heads variants on cached features and evaluate them on val (see exp.py for the layout).

    nice python -m benchmarks.starter_v2.run_variants benchmarks/starter_v2/v1.json [--sets a,b]

A variant: {"name", "cfg": HeadConfig fields, "teacher": bool (attach the class knowledge),
"T": teacher temperature, "sets": [...], "fix_text": "v1" (keep v1's text head)}. Finished
variants (by name, in results.jsonl) are skipped, so a rerun continues.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.starter_v2.exp import ALL, WEIGHTS, Bench, brief, heads_of, results_dir
from indexer.align.heads import HeadConfig
from indexer.align.train import AlignData, train_heads
from indexer.training.paths import cache_dir


def run_variant(bench: Bench, v: dict, data_all: AlignData, all_sets: tuple[str, ...]) -> dict:
    t0 = time.time()
    sets = tuple(v.get("sets", all_sets))
    data = bench.load(sets)[0] if sets != all_sets else data_all
    data = AlignData(data.media, data.text, data.pairs, data.split, data.group)
    if v.get("teacher"):
        data = bench.with_teacher(data, v.get("T", 1.0))
    cfg = replace(HeadConfig(), bridge_dim=384, **v.get("cfg", {}))
    tw = None
    if v.get("fix_text") == "v1":
        tw = heads_of(WEIGHTS / "starter-heads-v1.safetensors")["text_weight"]
    res = train_heads(data, cfg, cache_dir("checkpoints"), progress=False, text_weight=tw)
    np.savez(results_dir() / f"heads-{v['name']}.npz", **res.heads)
    ev = bench.full_eval(data_all, res.heads, ("val",))
    print(v["name"], f"best {res.best_epoch} {time.time() - t0:.0f}s", brief(ev["val"]), flush=True)
    return {
        "name": v["name"],
        "spec": v,
        "best_epoch": res.best_epoch,
        "history": res.history,
        "eval": ev,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", type=Path, help="JSON list of variants (v1.json ... v5.json)")
    ap.add_argument("--sets", default=",".join(ALL), help="comma-separated data sets")
    ap.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args()
    all_sets = tuple(args.sets.split(","))
    res_path = results_dir() / "results.jsonl"
    done = set()
    if res_path.exists():
        done = {json.loads(line)["name"] for line in res_path.read_text().splitlines()}
    bench = Bench.open(args.data_root)
    data_all, counts = bench.load(all_sets)
    print(counts, flush=True)
    with res_path.open("a") as out:
        if "v1" not in done:
            heads = heads_of(WEIGHTS / "starter-heads-v1.safetensors")
            ev = bench.full_eval(data_all, heads, ("val",))
            print("v1", brief(ev["val"]), flush=True)
            out.write(json.dumps({"name": "v1", "eval": ev}) + "\n")
        for v in json.loads(args.variants.read_text()):
            if v["name"] not in done:
                out.write(json.dumps(run_variant(bench, v, data_all, all_sets)) + "\n")
                out.flush()


if __name__ == "__main__":
    main()
