"""`crossmedia align`: train the starter model's heads on image-text manifests, write the artifact."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from indexer.align.card import write_model_card
from indexer.align.classes import PROXY_ROW, attach_class_knowledge, class_name_proxy
from indexer.align.heads import HeadConfig, apply_heads
from indexer.align.train import AlignData, evaluate_embeddings, train_heads
from indexer.training.features import FeatureCache
from indexer.training.pairs import manifest_digest
from indexer.training.paths import cache_dir

# HeadConfig fields that are `crossmedia align` flags besides --epochs/--seed (api/cli_train.py).
TRAIN_FLAGS = (
    "dim",
    "batch_size",
    "lr",
    "weight_decay",
    "dropout",
    "distill",
    "distill_temperature",
)


@dataclass
class AlignConfig:
    """One `crossmedia align` run. `out` is a .safetensors file; its stem is the head version
    (e.g. starter-heads-v1) and its model card goes to `card` (default: MODEL_CARD.md beside it)."""

    manifests: list[Path]  # items.jsonl with image + captions or label
    out: Path
    head: HeadConfig = field(default_factory=HeadConfig)  # epochs and seed included
    cache_dir: Path | None = None  # cache root (features/, checkpoints/); None: the user cache
    device: str = "cpu"
    progress: bool = True
    card: Path | None = None

    def card_path(self) -> Path:
        return Path(self.card) if self.card is not None else Path(self.out).parent / "MODEL_CARD.md"

    def command(self) -> str:
        """The command line that reproduces this run (written into the artifact and its card)."""
        parts = ["crossmedia align"] + [f"--manifest {shlex.quote(str(p))}" for p in self.manifests]
        parts += [
            f"--out {shlex.quote(str(self.out))}",
            *([f"--card {shlex.quote(str(self.card))}"] if self.card is not None else []),
            f"--epochs {self.head.epochs}",
            f"--seed {self.head.seed}",
        ]
        default = HeadConfig()
        for f in fields(HeadConfig):
            if f.name in TRAIN_FLAGS:
                value = getattr(self.head, f.name)
                if value != getattr(default, f.name):
                    parts.append(f"--{f.name.replace('_', '-')} {value}")
        return " ".join(parts)


@dataclass
class AlignReport:
    out: Path
    head_version: str
    best_epoch: int
    val: dict[str, dict]
    test: dict[str, dict]
    counts: dict[str, dict[str, int]]  # per data set: media rows per split


def gather(
    manifests: Sequence[Path], features: FeatureCache
) -> tuple[AlignData, dict[str, dict[str, int]]]:
    """Concatenate the manifests' cached features into one AlignData (texts deduplicated)."""
    media, split, group, pairs, text_rows = [], [], [], [], []
    text_index: dict[str, int] = {}
    counts: dict[str, dict[str, int]] = {}
    offset = 0
    for manifest in manifests:
        feats = features.load(Path(manifest))
        items = feats.items
        local_to_global = []
        for s, vec in zip(feats.texts, feats.pooled_text, strict=True):
            if s not in text_index:
                text_index[s] = len(text_index)
                text_rows.append(vec)
            local_to_global.append(text_index[s])
        media.append(feats.head_inputs)
        pairs += [(offset + i, local_to_global[t]) for i, t in feats.pairs]
        split += [it.split for it in items]
        group += [it.source for it in items]
        name = items[0].source
        counts[name] = {s: sum(it.split == s for it in items) for s in ("train", "val", "test")}
        offset += len(items)
    data = AlignData(
        media=np.concatenate(media),
        text=np.stack(text_rows),
        pairs=np.array(pairs),
        split=split,
        group=group,
    )
    return data, counts


def run_align(cfg: AlignConfig) -> AlignReport:
    """Train starter heads on `cfg.manifests`; write `cfg.out` and its model card.

    Tower features come from the shared feature cache and each epoch is checkpointed under the
    cache root, so rerunning the same command resumes instead of starting over.
    """
    out = Path(cfg.out)
    if out.suffix != ".safetensors":
        raise ValueError(
            f"--out must end in .safetensors (got {out}), e.g. --out starter-heads-v2.safetensors"
        )
    features = FeatureCache(
        cache_dir("features", cfg.cache_dir), device=cfg.device, progress=cfg.progress
    )
    data, counts = gather(cfg.manifests, features)
    head = replace(cfg.head, bridge_dim=data.text.shape[1])
    if head.distill > 0:
        attach_class_knowledge(data, features)
    result = train_heads(data, head, cache_dir("checkpoints", cfg.cache_dir), progress=cfg.progress)
    m, t = apply_heads(result.heads, data.media, data.text, head.bridge_dim)
    val = evaluate_embeddings(data, m, t, "val")
    test = evaluate_embeddings(data, m, t, "test")
    if data.teacher is not None and data.class_text is not None:
        _, c = apply_heads(result.heads, None, data.class_text[PROXY_ROW])
        for split, metrics in (("val", val), ("test", test)):
            rows = [i for i, s in enumerate(data.split) if s == split]
            metrics["class_proxy"] = class_name_proxy(m, c, data.teacher, rows)
    command = cfg.command()
    meta = {
        "head_version": out.stem,
        "towers": features.tag,
        "head_config": json.dumps(asdict(head), sort_keys=True),
        "data": json.dumps({Path(p).parent.name: manifest_digest(Path(p)) for p in cfg.manifests}),
        "best_epoch": str(result.best_epoch),
        "val_mean": json.dumps(val.get("mean", {})),
        "command": command,
    }
    write_heads_artifact(out, result.heads, features.class_text, meta)
    write_model_card(
        cfg.card_path(),
        version=out.stem,
        command=command,
        cfg=head,
        counts=counts,
        manifests=cfg.manifests,
        best_epoch=result.best_epoch,
        val=val,
        test=test,
        history=result.history,
    )
    return AlignReport(
        out=out,
        head_version=out.stem,
        best_epoch=result.best_epoch,
        val=val,
        test=test,
        counts=counts,
    )


def write_heads_artifact(
    out: Path, heads: dict[str, np.ndarray], class_text: np.ndarray, meta: dict[str, str]
) -> None:
    """Exported heads under the starter model's own state-dict names (see starter_model.head_keys)."""
    import os

    import torch
    from safetensors.torch import save_file

    tensors = {
        "visual.tower.head.proj.weight": heads["media_weight"],
        "visual.tower.head.proj.bias": heads["media_bias"],
        "visual.bridge_proj.weight": heads["text_weight"],
        "visual.bridge_gate": heads["bridge_gate"],
        "visual.bridge.class_text": class_text.astype(np.float32),
        "text.proj.weight": heads["text_weight"],
        "logit_scale": heads["logit_scale"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file(
        {k: torch.tensor(np.asarray(v)) for k, v in tensors.items()},  # copies: no aliasing
        str(tmp),
        metadata=meta,
    )
    os.chmod(tmp, 0o644)  # safetensors writes 0600; the artifact is a committed, shared file
    os.replace(tmp, out)
