"""The one config of `crossmedia train-reranker` (see indexer/train_reranker/train.py)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path

from retrieval.rerank.model import RerankerConfig

DEFAULT_SETS = ("coco_mini", "tuxpaint", "cifar10")


@dataclass
class TrainRerankerConfig:
    out: Path  # the artifact (.safetensors); its .json and .md cards are written beside it
    encoder: str = "starter"  # the starter model (config name) whose space is re-ranked
    data_root: Path | None = (
        None  # folder of the sets; None: $CROSSMEDIA_TRAIN_DATA or ../shared/data
    )
    sets: tuple[str, ...] = DEFAULT_SETS
    epochs: int = 3
    train_depth: int = 16  # first-stage hard negatives per training query
    in_batch: int = 4  # other queries' positives added as negatives
    depth: int = 50  # serving depth, where alpha is selected
    batch_queries: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    cos_offset: float = 0.0
    token_noise: float = 0.0625
    oof_folds: int = 0  # K > 1: train features out-of-fold from K fold heads
    hub_folds: int = 4  # fold heads for choosing the query-bank stage (0: none)
    stage1_from: Path | None = None  # take model and alpha from this artifact instead of training
    model: RerankerConfig = field(default_factory=lambda: RerankerConfig(use_global=False))
    cache_dir: Path | None = None  # cache root (features/, checkpoints/); None: the user cache
    progress: bool = True

    def manifests(self, root: Path) -> dict[str, Path]:
        return {name: Path(root) / name / "items.jsonl" for name in self.sets}

    def command(self) -> str:
        """The command line that reproduces this run (written into the card)."""
        parts = ["crossmedia train-reranker", f"--out {shlex.quote(str(self.out))}"]
        default = TrainRerankerConfig(out=self.out)
        for f in fields(self):
            if f.name in (
                "out",
                "model",
                "cache_dir",
                "progress",
                "train_depth",
                "in_batch",
                "depth",
                "batch_queries",
                "lr",
                "weight_decay",
            ):
                continue
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                flag = {"encoder": "model"}.get(f.name, f.name).replace("_", "-")
                if f.name == "sets":
                    value = ",".join(value)
                parts.append(f"--{flag} {shlex.quote(str(value))}")
        if self.model.use_global:
            parts.append("--use-global")
        return " ".join(parts)
