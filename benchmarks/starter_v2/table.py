"""Markdown tables of final_eval.json (the ones in benchmarks/starter_v2.md).

python -m benchmarks.starter_v2.table val|test [name,name,...]
"""

from __future__ import annotations

import json
import sys

from benchmarks.starter_v2.exp import GROUPS, results_dir

FLICKR_KEYS = ("t2i 1", "t2i 5", "t2i 10", "i2t 1", "i2t 5", "i2t 10")


def row(v: dict) -> list[str]:
    cells = [
        f"{v[g]['t2m R@1']:.3f} / {v[g]['t2m R@10']:.3f} / "
        f"{v[g]['m2t R@1']:.3f} / {v[g]['m2t R@10']:.3f}"
        for g in GROUPS
    ]
    return cells + [f"{v[p]['t2i R@1']:.3f} / {v[p]['i2t R@1']:.3f}" for p in ("proxy50", "proxy0")]


def flickr_table(E: dict, names: list[str]) -> None:
    print()
    print(
        "| flickr8k 1k test | images | captions | t2i R@1 | t2i R@5 | t2i R@10 "
        "| i2t R@1 | i2t R@5 | i2t R@10 |"
    )
    print("|---" * 9 + "|")
    for n in names:
        f = E[n].get("flickr1k")
        if f:
            cells = " | ".join(f"{f[k]:.3f}" for k in FLICKR_KEYS)
            print(f"| {n} | {f['images']} | {f['captions']} | {cells} |")


def main() -> None:
    d = results_dir()
    E = json.loads((d / "final_eval.json").read_text())
    R = {}
    for line in (d / "results.jsonl").read_text().splitlines():
        R[json.loads(line)["name"]] = json.loads(line)
    sp = sys.argv[1]
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else list(E)
    v = E[names[0]][sp]
    hdr = (
        ["variant", "best epoch"]
        + [f"{g} ({v[g]['media']} img / {v[g]['texts']} txt)" for g in GROUPS]
        + [
            f"class proxy p>=0.5 ({int(v['proxy50']['classes'])} cls)",
            f"class proxy all ({int(v['proxy0']['classes'])} cls)",
        ]
    )
    print("| " + " | ".join(hdr) + " |")
    print("|---" * len(hdr) + "|")
    for n in names:
        if sp not in E[n]:
            continue
        spec = R.get(n, {}).get("spec", {})
        desc = json.dumps(spec.get("cfg", {})).replace("|", "/") if spec else ""
        best = R.get(n, {}).get("best_epoch", "-")
        print(f"| {n} {desc} | {best} | " + " | ".join(row(E[n][sp])) + " |")
    if sp == "test":
        flickr_table(E, names)


if __name__ == "__main__":
    main()
