"""Hybrid retrieval side by side: recall@k of the vector, lexical and hybrid modes through
`crossmedia bench recall`'s protocol (honest galleries: media found only through their content
and the transcript the system hears), per data set and split; and the fusion constant chosen on
val. Catalogues are built once per (set, split) and kept in the user cache.

    python benchmarks/hybrid_bench.py --sets speech:val --rrf-k 10,30,60          # selection
    python benchmarks/hybrid_bench.py --sets speech:test,coco_mini:test,tuxpaint:test,flickr8k:test
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from platformdirs import user_cache_dir

from indexer.bench_recall import run_recall_bench

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results"


def cache_dir(name: str, split: str, model: str) -> Path:
    root = Path(os.environ.get("CROSSMEDIA_CACHE_DIR") or user_cache_dir("crossmedia"))
    return root / "bench" / f"{name}-{split}-{model}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="speech:val", help="name:split,... under ../shared/data")
    ap.add_argument("--modes", default="vector,lexical,hybrid")
    ap.add_argument("--rrf-k", default="60", help="fusion constants to compare (hybrid only)")
    ap.add_argument("--model", default="starter")
    ap.add_argument("--out", type=Path, default=OUT / "hybrid.json")
    args = ap.parse_args()
    rows = []
    for spec in args.sets.split(","):
        name, split = spec.split(":")
        for mode in args.modes.split(","):
            for rrf_k in [int(x) for x in args.rrf_k.split(",")] if mode == "hybrid" else [None]:
                res = run_recall_bench(
                    DATA / name / "items.jsonl",
                    model=args.model,
                    split=split,
                    mode=mode,
                    rrf_k=rrf_k,
                    progress=False,
                    data_dir=cache_dir(name, split, args.model),
                )
                for task, m in res["tasks"].items():
                    rows.append(
                        {
                            "set": name,
                            "split": split,
                            "mode": mode,
                            "rrf_k": rrf_k,
                            "task": task,
                            **m,
                        }
                    )
                    print(
                        f"| {name} | {split} | {mode}{'' if rrf_k is None else f' (k={rrf_k})'} | "
                        f"{task} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['R@10']:.3f} | "
                        f"{m['mAP@10']:.3f} | {m['queries']} | {m['gallery']} | "
                        f"{m['chance_R@1']:.4f} |",
                        flush=True,
                    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    prev = json.loads(args.out.read_text()) if args.out.is_file() else []
    keep = [
        r for r in prev if (r["set"], r["split"]) not in {(r2["set"], r2["split"]) for r2 in rows}
    ]
    args.out.write_text(json.dumps(keep + rows, indent=2))


if __name__ == "__main__":
    main()
