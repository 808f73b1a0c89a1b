"""Starter heads v2 experiments: shared set-up of the scripts beside this file.

The numbers in benchmarks/starter_v2.md were produced on branch `starter-v2` (main's 6ef2048 +
the branch's commits, before the layout of issue 10), with these scripts as then written: features
in `.cache/align` (feature version 1), `python -m indexer.align`, results in `.cache/exp`. Ported
to today's layout: features from the shared per-manifest cache (indexer/training/features.py,
feature version 2; the same tower outputs to ~1e-6 on a spot check of 7 flickr8k items), results
and checkpoints under the user cache directory ($CROSSMEDIA_CACHE_DIR), data from --data-root /
$CROSSMEDIA_TRAIN_DATA / ../shared/data. Same training math (the ported trainer gives bit-identical
heads to the branch's on seeded toy data), but a rerun may differ in the last digits.

    nice python -m benchmarks.starter_v2.run_variants benchmarks/starter_v2/v1.json
    nice python -m benchmarks.starter_v2.final_eval naive,v1,v2
    python -m benchmarks.starter_v2.table val|test [names]
    nice python -m benchmarks.starter_v2.throughput
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.align.classes import PROXY_ROW, class_name_proxy, class_templates, teacher_probs
from indexer.align.heads import apply_heads
from indexer.align.run import gather
from indexer.align.train import AlignData, evaluate_embeddings, pair_reports
from indexer.training.features import FeatureCache
from indexer.training.paths import cache_dir, data_root

ALL = ("coco_mini", "tuxpaint", "cifar10", "flickr8k")
WEIGHTS = Path(__file__).resolve().parents[2] / "retrieval" / "encoders" / "weights"
GROUPS = ("flickr8k", "coco_mini", "tuxpaint", "cifar10")


def results_dir() -> Path:
    path = cache_dir("starter_v2_exp")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Bench:
    """The feature cache, the trunk's classifier (W (C, 1280), B (C,)) and the class prompts'
    locked-text features CT (K, C, 384)."""

    features: FeatureCache
    W: np.ndarray
    B: np.ndarray
    CT: np.ndarray
    data: Path

    @classmethod
    def open(cls, data: Path | None = None) -> Bench:
        import torch

        torch.set_num_threads(1)  # as the recorded runs
        f = FeatureCache(cache_dir("features"))
        clf = f.towers.visual.bridge.classifier
        W, B = clf.weight.detach().numpy(), clf.bias.detach().numpy()
        return cls(f, W, B, class_templates(f), data_root(data))

    def load(self, sets: Sequence[str] = ALL) -> tuple[AlignData, dict]:
        return gather([self.data / s / "items.jsonl" for s in sets], self.features)

    def with_teacher(self, data: AlignData, T: float = 1.0) -> AlignData:
        data.teacher = teacher_probs(self.W, self.B, data.media[:, :1280], T)
        data.class_text = self.CT
        return data

    def full_eval(
        self, data: AlignData, heads: dict[str, np.ndarray], splits: Sequence[str] = ("val",)
    ) -> dict[str, Any]:
        m, t = apply_heads(heads, data.media, data.text, 384)
        c = apply_heads(heads, None, self.CT[PROXY_ROW], 0)[1]
        probs = teacher_probs(self.W, self.B, data.media[:, :1280])
        out: dict[str, Any] = {}
        for sp in splits:
            ev = evaluate_embeddings(data, m, t, sp)
            ev.pop("mean", None)
            rows = [i for i, s in enumerate(data.split) if s == sp]
            ev["class_proxy"] = class_name_proxy(m, c, probs, rows)
            out[sp] = ev
            if sp == "test":
                out["flickr1k"] = flickr_1k(data, m, t)
        return out


def heads_of(path: Path | str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    t = load_file(str(path))
    return {
        "media_weight": t["visual.tower.head.proj.weight"],
        "media_bias": t["visual.tower.head.proj.bias"],
        "text_weight": t["text.proj.weight"],
        "bridge_gate": t["visual.bridge_gate"],
        "logit_scale": t["logit_scale"],
    }


def flickr_1k(data: AlignData, m: np.ndarray, t: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The flickr8k 1k test protocol: 1,000 of the test-split images (seeded draw over the rows in
    manifest order) with all their captions, R@1/5/10 both directions."""
    rows = [i for i in range(len(data.media)) if data.group[i] == "flickr8k"]
    rows = sorted(i for i in rows if data.split[i] == "test")
    rng = np.random.default_rng(seed)
    rows = sorted(rng.choice(rows, 1000, replace=False).tolist())
    rows, texts, i2t, t2i = pair_reports(data, rows, m, t)
    captions = sum(1 for a, _ in data.pairs.tolist() if a in set(rows))
    return {
        "images": len(rows),
        "captions": captions,
        "unique_texts": len(texts),
        **{f"t2i {k}": t2i[f"R@{k}"] for k in (1, 5, 10)},
        **{f"i2t {k}": i2t[f"R@{k}"] for k in (1, 5, 10)},
    }


def brief(ev: dict[str, Any]) -> str:
    s = []
    for g in GROUPS:
        if g in ev:
            r = ev[g]
            s.append(
                f"{g[:5]} t2i {r['t2m R@1']:.3f}/{r['t2m R@10']:.3f} "
                f"i2t {r['m2t R@1']:.3f}/{r['m2t R@10']:.3f}"
            )
    p = ev["class_proxy"]
    if p:
        s.append(f"proxy({int(p['classes'])}) t2i {p['t2i R@1']:.3f} i2t {p['i2t R@1']:.3f}")
    return " | ".join(s)
