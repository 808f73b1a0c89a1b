"""Evaluate saved heads: val for all (class proxies at p>=0.5 and p>=0), test for the named ones.

    nice python -m benchmarks.starter_v2.final_eval naive,v1,v2

Heads: v1 and v2 from retrieval/encoders/weights, every other name from run_variants' results;
writes final_eval.json beside them (see exp.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.starter_v2.exp import WEIGHTS, Bench, flickr_1k, heads_of, results_dir
from indexer.align.classes import PROXY_ROW, class_name_proxy, teacher_probs
from indexer.align.heads import apply_heads
from indexer.align.train import AlignData, evaluate_embeddings


def heads_np(name: str) -> dict[str, np.ndarray]:
    if name in ("v1", "v2"):
        return heads_of(WEIGHTS / f"starter-heads-{name}.safetensors")
    z = np.load(results_dir() / f"heads-{name}.npz")
    return {k: z[k] for k in z.files}


def evaluate(bench: Bench, data: AlignData, name: str, with_test: bool) -> dict:
    h = heads_np(name)
    m, t = apply_heads(h, data.media, data.text, 384)
    c = apply_heads(h, None, bench.CT[PROXY_ROW], 0)[1]
    probs = teacher_probs(bench.W, bench.B, data.media[:, :1280])
    r: dict = {}
    for sp in ("val", "test") if with_test else ("val",):
        ev = evaluate_embeddings(data, m, t, sp)
        ev.pop("mean", None)
        rows = [i for i, s in enumerate(data.split) if s == sp]
        ev["proxy50"] = class_name_proxy(m, c, probs, rows, 0.5)
        ev["proxy0"] = class_name_proxy(m, c, probs, rows, 0.0)
        r[sp] = ev
        if sp == "test":
            r["flickr1k"] = flickr_1k(data, m, t)
    return r


def line(name: str, v: dict) -> str:
    cells = [
        f"{v[g]['t2m R@1']:.3f}/{v[g]['t2m R@10']:.3f} {v[g]['m2t R@1']:.3f}/{v[g]['m2t R@10']:.3f}"
        for g in ("flickr8k", "coco_mini", "tuxpaint", "cifar10")
    ]
    p50, p0 = v["proxy50"], v["proxy0"]
    return (
        f"{name:16s} {' | '.join(cells)} | p50 {p50['t2i R@1']:.3f} {p50['i2t R@1']:.3f} "
        f"p0 {p0['t2i R@1']:.3f} {p0['i2t R@1']:.3f} ({int(p0['classes'])})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("test", nargs="?", default="", help="comma-separated names to test")
    ap.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args()
    names_test = set(filter(None, args.test.split(",")))
    bench = Bench.open(args.data_root)
    data, _ = bench.load()
    res_path = results_dir() / "results.jsonl"
    lines = res_path.read_text().splitlines() if res_path.exists() else []
    names = ["v1"] + [n for n in (json.loads(x)["name"] for x in lines) if n != "v1"]
    if (WEIGHTS / "starter-heads-v2.safetensors").exists():
        names.append("v2")
    out = {}
    for n in names:
        out[n] = evaluate(bench, data, n, n in names_test)
        print(line(n, out[n]["val"]), flush=True)
    (results_dir() / "final_eval.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
