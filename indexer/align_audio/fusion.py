"""Fusion of the acoustic vector with the transcript's text vector, weights chosen on validation."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from indexer.align_audio.data import DATASETS, AudioItem, load_cached, load_items, transcribe_sample
from indexer.align_audio.eval import both_directions, text_gallery
from indexer.align_audio.train import embed_head
from retrieval.encoders.audio_head import AudioHead
from retrieval.encoders.audio_starter import FusionConfig, fuse, normalize_transcript
from retrieval.encoders.audio_whisper import Transcript

TextFn = Callable[[Sequence[str]], np.ndarray]


def split_items(split: str, root: Path | None = None) -> dict[str, list[AudioItem]]:
    return {d: [it for it in load_items(d, root) if it.split == split] for d in DATASETS}


def tokens(feats: np.ndarray) -> np.ndarray:
    return feats if feats.ndim == 3 else feats[:, None, :]  # MFCC stats: one token


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


def phrase_data(cache: Path, split: str, root: Path | None = None) -> dict:
    from indexer.align_audio.phrases import phrase_vectors
    from retrieval.encoders.audio_whisper import WhisperAudioTower

    tower = WhisperAudioTower()
    return phrase_vectors(cache, split, tower.token_features, tower.transcribe_detailed, root)


def spoken_vectors(text_fn: TextFn, transcripts: Sequence[Transcript]) -> np.ndarray:
    return text_fn([normalize_transcript(t.text) or " " for t in transcripts])


def fit_fusion(
    head: AudioHead, text_fn: TextFn, cache: Path, phrases: bool = True, root: Path | None = None
) -> tuple[FusionConfig, dict]:
    """Grid search on the validation split: mean over data sets of (a2t R@1 + t2a mAP@10) / 2."""
    return best_fusion(val_sets(head, text_fn, cache, phrases, root), fusion_grid())


ValSet = tuple[np.ndarray, list[Transcript], np.ndarray, np.ndarray, np.ndarray]


def val_sets(
    head: AudioHead, text_fn: TextFn, cache: Path, phrases: bool = True, root: Path | None = None
) -> dict[str, ValSet]:
    """Per validation set: (acoustic vectors, transcripts, their text vectors, the caption
    gallery's vectors, each clip's caption row), computed once for the whole grid."""
    sets: dict[str, ValSet] = {}
    for name, all_its in split_items("val", root).items():
        its = [it for it in all_its if transcribe_sample(it)]
        texts, index = text_gallery([it.text for it in its])
        tr = load_transcripts(cache, name, [it.id for it in its])
        acoustic = embed_head(
            head, tokens(load_cached(cache, name, "whisper", [it.id for it in its]))
        )
        sets[name] = (acoustic, tr, spoken_vectors(text_fn, tr), text_fn(texts), index)
    if phrases:  # the spoken-phrase proxy (indexer/align_audio/phrases.py), validation split
        p = phrase_data(cache, "val", root)
        texts, index = text_gallery(p["texts"])
        tr = p["transcripts"]
        sets["phrases"] = (
            embed_head(head, p["tokens"]),
            tr,
            spoken_vectors(text_fn, tr),
            text_fn(texts),
            index,
        )
    return sets


def set_scores(sets: dict[str, ValSet], fusion: FusionConfig) -> dict[str, dict]:
    """Per set, `both_directions` of the vectors `fusion` makes."""
    return {
        name: both_directions(fused_vectors(a, tr, sp, fusion), tv, ix)
        for name, (a, tr, sp, tv, ix) in sets.items()
    }


def best_fusion(sets: dict[str, ValSet], grid: Sequence[FusionConfig]) -> tuple[FusionConfig, dict]:
    """The grid's best configuration by the mean score over the sets, and each rule's best."""
    best: tuple[float, FusionConfig] = (-1.0, FusionConfig())
    by_split: dict[str, float] = {}
    for fusion in grid:
        s = float(np.mean([_score(r) for r in set_scores(sets, fusion).values()]))
        by_split[fusion.split] = max(s, by_split.get(fusion.split, -1.0))
        if s > best[0] + 1e-9:  # ties keep the earlier: Whisper's confidence before word counts
            best = (s, fusion)
    return best[1], {"fusion_val": best[0], "fusion_val_by_split": by_split}


def fusion_grid() -> list[FusionConfig]:
    """What earns the phrase weight: Whisper's average log-probability (issue 15), or, as the v1
    and v2 heads chose, two or more words; weights, then the no-speech and log-prob gates."""
    splits = [("logprob", lp) for lp in (-0.15, -0.3, -0.5, -0.7)] + [("words", -0.3)]
    grid = itertools.product(
        splits,
        (0.0, 0.25, 0.5, 0.75, 1.0),  # transcripts short of "sure"
        (0.0, 0.25, 0.5, 0.75, 0.9, 1.0),  # sure transcripts
        (0.3, 0.5, 0.7, 1.0),
        (-0.75, -1.0, -100.0),
    )
    return [
        FusionConfig(w, wp, ns, lp, split=split, sure_logprob=sure)
        for (split, sure), w, wp, ns, lp in grid
    ]


def _score(r: dict) -> float:
    return (r["audio_to_text"]["R@1"] + r["text_to_audio"]["mAP@10"]) / 2
