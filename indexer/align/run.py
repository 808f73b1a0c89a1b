"""`crossmedia align`: train the starter model's heads on image-text manifests, write the artifact."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from indexer.align.card import write_model_card
from indexer.align.data import PairTable, manifest_digest, read_image_pairs
from indexer.align.features import DEFAULT_CACHE
from indexer.align.heads import HeadConfig, apply_heads
from indexer.align.train import AlignData, evaluate_embeddings, train_heads


@dataclass
class AlignReport:
    out: Path
    head_version: str
    best_epoch: int
    val: dict[str, dict]
    test: dict[str, dict]
    counts: dict[str, dict[str, int]]  # per data set: media rows per split


def gather(manifests: Sequence[Path], features) -> tuple[AlignData, dict[str, dict[str, int]]]:
    """Concatenate the manifests' cached features into one AlignData (texts deduplicated)."""
    media, split, group, pairs, text_rows = [], [], [], [], []
    text_index: dict[str, int] = {}
    counts: dict[str, dict[str, int]] = {}
    offset = 0
    for manifest in manifests:
        items = read_image_pairs(Path(manifest))
        if not items:
            raise ValueError(f"{manifest} has no items with both an image and a caption or label.")
        table = PairTable.build(items)
        feats = features.for_manifest(Path(manifest), items, table.texts)
        local_to_global = []
        for s, vec in zip(table.texts, feats["text_features"], strict=True):
            if s not in text_index:
                text_index[s] = len(text_index)
                text_rows.append(vec)
            local_to_global.append(text_index[s])
        media.append(feats["images"])
        pairs += [(offset + i, local_to_global[t]) for i, t in table.pairs]
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


def run_align(
    manifests: Sequence[Path],
    out: Path,
    epochs: int = 20,
    seed: int = 0,
    *,
    head: HeadConfig | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    device: str = "cpu",
    command: str | None = None,
    progress: bool = True,
) -> AlignReport:
    """Train starter heads on `manifests` (items.jsonl with image + captions/label); write `out`.

    `out` is a .safetensors file; its stem is the head version (e.g. starter-heads-v1) and a
    MODEL_CARD.md is written beside it. Features are cached under `cache_dir`, and each epoch is
    checkpointed there, so rerunning the same command resumes instead of starting over.
    """
    from indexer.align.features import StarterFeatures

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(
            f"--out must end in .safetensors (got {out}), e.g. "
            "retrieval/encoders/weights/starter-heads-v1.safetensors"
        )
    features = StarterFeatures(Path(cache_dir), device=device)
    data, counts = gather(manifests, features)
    cfg = replace(head or HeadConfig(), epochs=epochs, seed=seed, bridge_dim=data.text.shape[1])
    result = train_heads(data, cfg, Path(cache_dir) / "checkpoints", progress=progress)
    m, t = apply_heads(result.heads, data.media, data.text, cfg.bridge_dim)
    val = evaluate_embeddings(data, m, t, "val")
    test = evaluate_embeddings(data, m, t, "test")

    version = out.stem
    command = command or "crossmedia align " + " ".join(
        [f"--manifest {shlex.quote(str(p))}" for p in manifests]
        + [f"--out {shlex.quote(str(out))}", f"--epochs {epochs}", f"--seed {seed}"]
    )
    meta = {
        "head_version": version,
        "towers": features.tag,
        "head_config": json.dumps(asdict(cfg), sort_keys=True),
        "data": json.dumps({Path(p).parent.name: manifest_digest(Path(p)) for p in manifests}),
        "best_epoch": str(result.best_epoch),
        "val_mean": json.dumps(val.get("mean", {})),
        "command": command,
    }
    write_heads_artifact(out, result.heads, features.class_text, meta)
    write_model_card(
        out.parent / "MODEL_CARD.md",
        version=version,
        command=command,
        cfg=cfg,
        counts=counts,
        manifests=manifests,
        best_epoch=result.best_epoch,
        val=val,
        test=test,
        history=result.history,
    )
    return AlignReport(
        out=out,
        head_version=version,
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
