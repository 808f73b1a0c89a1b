"""What every stage of `crossmedia train-reranker` reads, in one object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.align.heads import HeadConfig
from indexer.train_reranker.config import TrainRerankerConfig
from indexer.train_reranker.tasks import PaddedTask, load_split_tasks
from indexer.training.features import FeatureCache


@dataclass
class Job:
    """What every stage reads: the config, the starter encoder and the data's sources."""

    cfg: TrainRerankerConfig
    encoder: Any  # StarterEncoder with the shipped heads
    features: FeatureCache
    checkpoints: Path  # align's head checkpoints (fold heads)
    manifests: dict[str, Path]  # data set -> items.jsonl
    t_start: float
    head: HeadConfig  # how the encoder's shipped heads were trained (fold heads repeat it)

    def tasks(
        self,
        splits: tuple[str, ...],
        max_tokens: int,
        oof_heads: list[dict[str, np.ndarray]] | None = None,
    ) -> dict[str, list[PaddedTask]]:
        return load_split_tasks(
            self.encoder.towers, self.features, self.manifests, splits, max_tokens, oof_heads
        )
