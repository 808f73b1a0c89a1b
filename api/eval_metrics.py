"""The last `crossmedia eval` (retrieval/live_eval.py) as Prometheus gauges for `/metrics`."""

from __future__ import annotations

import calendar
import time
from typing import Any

from api.metrics import _labels

_HELP = {
    "crossmedia_eval_recall": "Recall@k of the last `crossmedia eval` on the live catalogue.",
    "crossmedia_eval_chance_recall": "Chance level of that recall@k (random ranking).",
    "crossmedia_eval_gallery": "Items of the target modality the eval's queries searched.",
    "crossmedia_eval_queries": "Caption queries the eval ran.",
    "crossmedia_eval_drift_far_share": "Share of sampled media far from the model's training "
    "data (about 0.05 in distribution).",
    "crossmedia_eval_drift_mean_nn_cosine": "Mean nearest-neighbour cosine of sampled media to "
    "the training bank.",
    "crossmedia_eval_timestamp_seconds": "When the last eval ran (Unix time).",
}


def eval_metric_lines(last: dict[str, Any] | None) -> str:
    """Gauges of the last eval; empty when none ran (or its file cannot be read)."""
    if not last or "tasks" not in last:
        return ""
    rows: dict[str, list[str]] = {name: [] for name in _HELP}
    for task, row in last["tasks"].items():
        for stage in ("first_stage", "reranked"):
            for key, value in row.get(stage, {}).items():
                if key.startswith("R@"):
                    labels = _labels(task=task, stage=stage, k=key[2:])
                    rows["crossmedia_eval_recall"].append(f"{{{labels}}} {value:.6f}")
        for k in (1, 10):
            if f"chance_R@{k}" in row:
                labels = _labels(task=task, k=str(k))
                rows["crossmedia_eval_chance_recall"].append(
                    f"{{{labels}}} {row[f'chance_R@{k}']:.6f}"
                )
        rows["crossmedia_eval_gallery"].append(f"{{{_labels(task=task)}}} {row['gallery']}")
        rows["crossmedia_eval_queries"].append(f"{{{_labels(task=task)}}} {row['queries']}")
    for modality, d in last.get("drift", {}).items():
        if d.get("available"):
            labels = _labels(modality=modality)
            rows["crossmedia_eval_drift_far_share"].append(f"{{{labels}}} {d['far_share']:.6f}")
            rows["crossmedia_eval_drift_mean_nn_cosine"].append(
                f"{{{labels}}} {d['mean_nn_cosine']:.6f}"
            )
    try:
        at = calendar.timegm(time.strptime(str(last.get("at")), "%Y-%m-%dT%H:%M:%SZ"))
        rows["crossmedia_eval_timestamp_seconds"].append(f" {at}")
    except ValueError:
        pass  # written by `crossmedia eval`, always with a time; a hand-made file may lack one
    lines = []
    for name, values in rows.items():
        if values:
            lines += [f"# HELP {name} {_HELP[name]}", f"# TYPE {name} gauge"]
            lines += [f"{name}{v}" for v in values]
    return "\n".join(lines) + "\n" if lines else ""
