"""`crossmedia align-audio`: train the starter audio head (or the MFCC baseline head) and choose
the fusion weights.

    crossmedia align-audio --out starter-audio-head-v2.safetensors

Builds the missing audio features first (indexer/align_audio/data.py, under the user cache
directory), trains on the train split, selects the epoch and the fusion weights on the validation
split (`retrieval.splits.split_of`); the test split is only read by benchmarks/audio_bench.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from indexer.align_audio.card import model_card
from indexer.align_audio.config import AlignAudioConfig
from indexer.align_audio.data import DATASETS, build_cache, load_cached
from indexer.align_audio.eval import text_gallery
from indexer.align_audio.fusion import TextFn, fit_fusion, split_items, tokens
from indexer.align_audio.train import AudioTrainConfig, ValSet, train_audio_head
from indexer.training.paths import data_root
from retrieval.encoders.audio_head import AudioHead, AudioHeadArtifact, save_audio_head
from retrieval.encoders.audio_starter import FusionConfig
from retrieval.encoders.audio_whisper import WhisperTowerConfig
from retrieval.encoders.base import l2_normalize


def locked_text(kind: str) -> tuple[TextFn, str]:
    """The text side to align to, and its space key: a starter model's (`starter`,
    `starter-v2`: its config name) or raw MiniLM's (`minilm`, the baseline)."""
    if kind.startswith("starter"):
        from retrieval.encoders.starter import build_starter_encoder

        enc = build_starter_encoder(kind)
        return enc.encode_texts, enc.space.key()
    if kind == "minilm":
        return _minilm(), "minilm-mean|raw|384"
    raise ValueError(f"Unknown text side {kind!r}. Use 'starter', 'starter-v2' or 'minilm'.")


def _minilm() -> TextFn:
    """The starter's MiniLM, mean-pooled and normalised, no head: one batch per call."""
    import torch

    from retrieval.encoders.starter import open_towers

    towers = open_towers()

    def encode(texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():
            states, mask = towers.text_states(list(texts))  # (N, T, 384), (N, T)
            return l2_normalize(towers.pooled_text(states, mask).float().numpy())

    return encode


def eval_sets(items: dict[str, list], text_fn: TextFn, cache: Path, kind: str) -> list[ValSet]:
    out = []
    for name, its in items.items():
        texts, index = text_gallery([it.text for it in its])
        feats = load_cached(cache, name, kind, [it.id for it in its])
        out.append(ValSet(name, tokens(feats), text_fn(texts), index))
    return out


def train(
    kind: str, text_fn: TextFn, cache: Path, config: AudioTrainConfig, root: Path | None = None
) -> tuple[AudioHead, dict]:
    train_items = [it for its in split_items("train", root).values() for it in its]
    keys, index = text_gallery(["\n".join(it.train_texts) for it in train_items])
    targets = l2_normalize(np.stack([text_fn(k.split("\n")).mean(0) for k in keys]))
    feats = np.concatenate(
        [
            tokens(load_cached(cache, d, kind, [it.id for it in train_items if it.dataset == d]))
            for d in DATASETS
        ]
    )
    order = [it for d in DATASETS for it in train_items if it.dataset == d]
    index = np.array([keys.index("\n".join(it.train_texts)) for it in order])
    groups = np.array([it.dataset for it in order])
    val = eval_sets(split_items("val", root), text_fn, cache, kind)
    return train_audio_head(feats, targets, index, groups, val, config)


def run_align_audio(cfg: AlignAudioConfig) -> dict[str, Any]:
    """Build the missing features, train, fit fusion, write `cfg.out` (+ card); returns the record."""
    import torch

    data_root(cfg.data_root)  # a missing data folder fails here, before any model loads
    cache = cfg.cache_path()
    build_cache(cache, DATASETS, cfg.transcribe_splits, cfg.data_root)
    threads = torch.get_num_threads()
    # The head is tiny; on shared CPUs extra OpenMP threads only spin (10x slower epochs here).
    torch.set_num_threads(1)
    try:
        text_fn, space_key = locked_text(cfg.text)
        head, info = train(cfg.features, text_fn, cache, cfg.train, cfg.data_root)
        whisper = cfg.features == "whisper"
        fusion, finfo = (
            fit_fusion(head, text_fn, cache, root=cfg.data_root)
            if whisper
            else (FusionConfig(), {})
        )
    finally:
        torch.set_num_threads(threads)
    tower = asdict(WhisperTowerConfig()) if whisper else {"features": "mfcc"}
    tower.pop("model_path", None)
    extra = {
        "data": list(DATASETS),
        "split": "retrieval.splits (train / val for selection)",
        "features": cfg.features,
        "text": cfg.text,
        "align": asdict(cfg.train),
        "best_epoch": info["best_epoch"],
        "val": info["best_val_per_set"],
        **finfo,
    }
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_audio_head(AudioHeadArtifact(head, space_key, out.stem, tower, asdict(fusion), extra), out)
    if whisper:
        out.with_suffix(".md").write_text(model_card(cfg, space_key, fusion, extra))
    return {"out": str(out), "fusion": asdict(fusion), **extra}
