"""The drift bank shipped beside a starter model's heads, for models that ship no re-ranker (whose
artifact would carry one): train-split image and text vectors of the training sets, projected
through the shipped heads, a seeded sample of each (retrieval/drift.py reads it).

    nice .venv/bin/python -m indexer.drift_bank --model starter-v2 \\
        --sets coco_mini,tuxpaint,cifar10,flickr8k

Tower features come from the training jobs' shared cache (built there when missing).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def make_heads_bank(
    model: str,
    sets: Sequence[str],
    per_modality: int = 1500,
    seed: int = 0,
    root: Path | None = None,
) -> Path:
    """Write `<head version>-bank.npz` beside the heads; returns its path."""
    from indexer.train_reranker.features import project
    from indexer.training.features import FeatureCache
    from indexer.training.paths import cache_dir, data_root
    from retrieval.drift import heads_bank_path
    from retrieval.encoders import create_encoder

    encoder = create_encoder(model, device="cpu")
    features = FeatureCache(cache_dir("features"))
    images, texts = [], []
    for name in sets:
        raw = features.load(data_root(root) / name / "items.jsonl")
        feats = project(raw, encoder.towers)  # type: ignore[attr-defined]
        train = [i for i, it in enumerate(raw.items) if it.split == "train"]
        images.append(feats.image_vecs[train])
        rows = sorted({t for i, t in raw.pairs if raw.items[i].split == "train"})
        texts.append(feats.text_vecs[rows])
    rng = np.random.default_rng(seed)
    bank = {}
    for modality, parts in (("image", images), ("text", texts)):
        vecs = np.concatenate(parts)
        pick = np.sort(rng.choice(len(vecs), min(per_modality, len(vecs)), replace=False))
        bank[modality] = vecs[pick].astype(np.float16)
    path = heads_bank_path(encoder.space.head_version)
    np.savez(path, **bank)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="starter-v2")
    ap.add_argument("--sets", default="coco_mini,tuxpaint,cifar10,flickr8k")
    ap.add_argument("--per-modality", type=int, default=1500)
    args = ap.parse_args(argv)
    path = make_heads_bank(args.model, args.sets.split(","), args.per_modality)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
