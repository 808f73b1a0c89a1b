"""Contrastive training of an audio head against a locked text tower (LiT-style), on cached features.

Why a trainer of its own: the audio tower is frozen and its features are cached, so an epoch is a
few matrix products; and the targets repeat (ten class prompts, ten digit words), so the loss must
treat every clip with the same text as a positive rather than as an in-batch negative.

Loss per batch: the batch's unique target texts T_b (U_b, D), audio vectors A (B, D):
audio->text cross-entropy over T_b, plus text->audio multi-positive InfoNCE (-log of the softmax
mass on the clips with that text), with a learned temperature. The epoch with the best validation
score (mean over data sets of audio->text R@1 and text->audio mAP@10) is kept.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from indexer.align_audio.eval import both_directions
from indexer.training.optim import optimiser_step
from retrieval.encoders.audio_head import AudioHead, AudioHeadConfig


@dataclass(frozen=True)
class AudioTrainConfig:
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    hidden: int = 512
    dropout: float = 0.2
    seed: int = 0
    balance_power: float = 0.5  # sample weight ~ 1 / (data set size) ** power


@dataclass
class ValSet:
    """One validation data set: features (N, K, d), unique-text vectors (U, D), item -> text."""

    name: str
    features: np.ndarray
    texts: np.ndarray
    text_index: np.ndarray


def contrastive_loss(
    a: torch.Tensor, t: torch.Tensor, tid: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    uniq, col = torch.unique(tid, return_inverse=True)  # col: (B,) index into the batch's texts
    logits = scale * a @ t[uniq].T  # (B, U_b)
    a2t = nn.functional.cross_entropy(logits, col)
    pos = col[None, :] == torch.arange(len(uniq), device=a.device)[:, None]  # (U_b, B)
    lt = logits.T.log_softmax(dim=-1)  # (U_b, B)
    t2a = -(lt.masked_fill(~pos, float("-inf")).logsumexp(dim=-1)).mean()
    return (a2t + t2a) / 2


def embed_head(head: AudioHead, features: np.ndarray, batch: int = 1024) -> np.ndarray:
    head.eval()
    with torch.inference_mode():
        out = [
            head(torch.from_numpy(features[i : i + batch]).float()).numpy()
            for i in range(0, len(features), batch)
        ]
    return np.concatenate(out).astype(np.float32)


def val_score(head: AudioHead, val: Sequence[ValSet]) -> tuple[float, dict]:
    per = {}
    for v in val:
        r = both_directions(embed_head(head, v.features), v.texts, v.text_index)
        per[v.name] = (r["audio_to_text"]["R@1"] + r["text_to_audio"]["mAP@10"]) / 2
    return float(np.mean(list(per.values()))), per


def _balanced_weights(groups: np.ndarray, power: float) -> np.ndarray:
    """Sampling probability per clip ~ 1 / (size of its data set) ** power."""
    _, counts = np.unique(groups, return_counts=True)
    size = dict(zip(np.unique(groups), counts, strict=True))
    weight = np.array([size[g] ** -power for g in groups])
    return weight / weight.sum()


def train_audio_head(
    features: np.ndarray,  # (N, K, d) tower tokens of the training clips
    targets: np.ndarray,  # (U, D) locked, L2-normalised text vectors
    target_index: np.ndarray,  # (N,) text of each clip
    groups: np.ndarray,  # (N,) data set of each clip, for balanced sampling
    val: Sequence[ValSet],
    config: AudioTrainConfig = AudioTrainConfig(),
) -> tuple[AudioHead, dict]:
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    head = AudioHead(
        AudioHeadConfig(
            in_dim=features.shape[-1],
            n_tokens=features.shape[1],
            hidden=config.hidden,
            out_dim=targets.shape[1],
            dropout=config.dropout,
        )
    )
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(features) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.1
    )
    weight = _balanced_weights(groups, config.balance_power)
    x, t, tid = (
        torch.from_numpy(features).float(),
        torch.from_numpy(targets).float(),
        torch.from_numpy(target_index).long(),
    )
    best = (-1.0, None, -1, {})
    history = []
    bar = tqdm(range(config.epochs), desc="align audio head")
    for epoch in bar:
        head.train()
        for _ in range(steps_per_epoch):
            idx = torch.from_numpy(rng.choice(len(x), size=config.batch_size, p=weight))
            loss = contrastive_loss(
                head(x[idx]), t, tid[idx], head.logit_scale.exp().clamp(max=100)
            )
            optimiser_step(opt, loss, sched)
        score, per = val_score(head, val)
        history.append({"epoch": epoch, "loss": loss.item(), "val": score, **per})
        bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{score:.3f}")
        if score > best[0]:
            best = (score, copy.deepcopy(head.state_dict()), epoch, per)
    head.load_state_dict(best[1])
    return head.eval(), {
        "best_epoch": best[2],
        "best_val": best[0],
        "best_val_per_set": best[3],
        "history": history,
    }
