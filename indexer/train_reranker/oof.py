"""Out-of-fold first stage for re-ranker training.

The shipped heads were fitted on the train split, so on train items the first stage is near
perfect (R@1 0.89-1.00, positive cosine ~0.68 vs ~0.35 on val): hard negatives mined there are
easy and the token sets are over-aligned, and a re-ranker trained on them learns to copy the
first stage. Here the train items are cut into `k` folds by a hash of their id; K copies of the
heads are trained with the same trainer and config as the shipped ones (indexer.align), each
without one fold; a train item's re-ranker data (vectors, token sets, first-stage ranking and
hard negatives) then comes from the heads that never saw it, over a gallery of its own fold,
as validation and test items come from heads that never saw them.

    heads = fold_heads(manifests, features, checkpoints, k=4)   # trains (or resumes) K runs
    with heads_loaded(encoder.model, heads[f]): ...            # project through fold f's heads
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from indexer.align.heads import HeadConfig
from indexer.align.run import gather
from indexer.align.train import train_heads
from indexer.training.features import FeatureCache

HOLDOUT = "holdout"  # split label of the held-out fold's rows: neither trained on nor selected on
# exported head name -> the starter model's state-dict key (as indexer.align.run writes them)
HEAD_KEYS = {
    "media_weight": "visual.tower.head.proj.weight",
    "media_bias": "visual.tower.head.proj.bias",
    "text_weight": ("visual.bridge_proj.weight", "text.proj.weight"),
    "bridge_gate": "visual.bridge_gate",
    "logit_scale": "logit_scale",
}


def fold_of(item_id: str, k: int) -> int:
    """Deterministic fold in [0, k) of an item; salted, so independent of the split's own hash."""
    if k < 2:
        raise ValueError(f"Out-of-fold training needs k >= 2 folds (got {k}).")
    return int.from_bytes(hashlib.sha256(f"oof-fold:{item_id}".encode()).digest()[:8], "big") % k


def holdout_splits(item_ids: Sequence[str], splits: Sequence[str], k: int, fold: int) -> list[str]:
    """`splits` with the train items of `fold` relabelled HOLDOUT (val/test untouched)."""
    return [
        HOLDOUT if s == "train" and fold_of(i, k) == fold else s
        for i, s in zip(item_ids, splits, strict=True)
    ]


def shipped_head_config(model: str) -> HeadConfig:
    """The HeadConfig a starter model's shipped heads were trained with (their metadata)."""
    import json

    from safetensors import safe_open

    from retrieval.encoders.starter import heads_path
    from retrieval.encoders.starter_model import StarterConfig

    with safe_open(str(heads_path(StarterConfig.load(model).heads)), framework="pt") as f:
        recorded = json.loads((f.metadata() or {}).get("head_config", "{}"))
    return HeadConfig(**recorded)


def fold_heads(
    manifests: Sequence[Path],
    features: FeatureCache,
    checkpoint_dir: Path,
    k: int,
    seed: int = 0,
    progress: bool = True,
    head: HeadConfig | None = None,
) -> list[dict[str, np.ndarray]]:
    """K exported heads (see ContrastiveHeads.export), fold f's trained without fold f.

    Same data, config (`head`: the shipped heads', see shipped_head_config; None: HeadConfig()
    defaults, starter-heads-v1's) and validation epoch selection as `crossmedia align`; tower
    features come from the shared feature cache and every run is checkpointed in
    `checkpoint_dir` (align's), so a rerun only reads them back.
    """
    from indexer.align.classes import attach_class_knowledge

    data, _ = gather(manifests, features)
    ids = [it.item_id for m in manifests for it in features.load(Path(m)).items]
    assert len(ids) == len(data.media)
    cfg = replace(head or HeadConfig(), seed=seed, bridge_dim=data.text.shape[1])
    if cfg.distill > 0:
        attach_class_knowledge(data, features)
    out = []
    for f in range(k):
        split = holdout_splits(ids, data.split, k, f)
        fold_data = replace(data, split=split)
        result = train_heads(fold_data, cfg, Path(checkpoint_dir), progress=progress)
        out.append(result.heads)
    return out


@contextmanager
def heads_loaded(model: Any, heads: dict[str, np.ndarray]) -> Iterator[Any]:
    """Temporarily put exported heads into a starter model (restored on exit)."""
    import torch

    sd = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    for name, keys in HEAD_KEYS.items():
        for key in (keys,) if isinstance(keys, str) else keys:
            new[key] = torch.from_numpy(np.asarray(heads[name], np.float32)).reshape(sd[key].shape)
    saved = {key: sd[key].detach().clone() for key in new}
    model.load_state_dict(new, strict=False)
    try:
        yield model
    finally:
        model.load_state_dict(saved, strict=False)
