"""Plot R@1/R@5/R@10 of the starter against its baselines from benchmarks/results/recall_starter.json.

python -m benchmarks.plot_recall   # writes benchmarks/results/recall_starter.png
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; set here, inside the script, not by any library module
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = (("random", "#bbbbbb"), ("label_bridge", "#7fa7d9"), ("starter", "#d9822b"))


def main() -> None:
    data = json.loads((HERE / "results" / "recall_starter.json").read_text())["recall"]
    tasks = list(data)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.0 * len(tasks), 3.4), sharey=True)
    for ax, task in zip(axes, tasks, strict=True):
        ks = ("R@1", "R@5", "R@10")
        width = 0.26
        for j, (model, colour) in enumerate(MODELS):
            vals = [data[task][model][k] for k in ks]
            ax.bar(
                [i + (j - 1) * width for i in range(len(ks))],
                vals,
                width,
                label=model,
                color=colour,
            )
        chance = data[task]["starter"]["chance_R@1"]
        ax.axhline(chance, color="black", lw=0.8, ls=":")
        g = data[task]["starter"]["gallery"]
        ax.set_title(f"{task}\ngallery {g}, chance R@1 {chance:.3f}", fontsize=8)
        ax.set_xticks(range(len(ks)), ks, fontsize=8)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("recall (held-out test split)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = HERE / "results" / "recall_starter.png"
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
