"""Trainable projection heads over locked features, and the multi-positive contrastive loss.

media (N, D_m) -> media head -> (N, dim);  text (N, D_t) -> text head -> (N, dim).
The last `bridge_dim` media columns, when set, are a vector already in the text tower's space
(the starter's label bridge): they go through the text head, times a learned gate, and the media
head starts at zero, so training begins from the zero-shot bridge instead of from noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class HeadConfig:
    dim: int = 256
    bridge_dim: int = 0  # trailing media columns that live in the text space (0: none)
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    dropout: float = 0.2  # on media features, the small data's main regulariser
    init_temperature: float = 0.07
    seed: int = 0
    # Weight of the distillation of the trunk's ImageNet classifier into the heads (0: off); needs
    # AlignData.teacher and .class_text (see indexer/align/classes.py).
    distill: float = 0.0
    distill_temperature: float = 1.0  # on the teacher's logits


class ContrastiveHeads(nn.Module):
    def __init__(self, media_dim: int, text_dim: int, cfg: HeadConfig) -> None:
        super().__init__()
        if cfg.bridge_dim and cfg.bridge_dim != text_dim:
            raise ValueError(f"bridge_dim {cfg.bridge_dim} must equal the text width {text_dim}.")
        self.bridge_dim = cfg.bridge_dim
        self.media = nn.Linear(media_dim - cfg.bridge_dim, cfg.dim)
        self.text = nn.Linear(text_dim, cfg.dim, bias=False)
        # Orthogonal rows keep text-space cosines nearly intact, so the bridge works at step 0.
        nn.init.orthogonal_(self.text.weight)
        if cfg.bridge_dim:
            nn.init.zeros_(self.media.weight)
            nn.init.zeros_(self.media.bias)
        self.bridge_gate = nn.Parameter(torch.ones(()))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))
        # Standardisation of the media input, folded into the linear layer on export.
        self.register_buffer("mu", torch.zeros(media_dim - cfg.bridge_dim))
        self.register_buffer("sigma", torch.ones(media_dim - cfg.bridge_dim))

    def encode_media(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        own = x[:, : x.shape[1] - self.bridge_dim]  # (B, D_m - bridge)
        own = (own - self.mu) / self.sigma
        if keep is not None:  # inverted dropout with a caller-seeded mask (reproducible resumes)
            own = own * keep
        y = self.media(own)  # (B, dim)
        if self.bridge_dim:
            y = y + self.bridge_gate * self.text(x[:, -self.bridge_dim :])
        return F.normalize(y, dim=-1)

    def encode_text(self, t: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(t), dim=-1)

    def export(self) -> dict[str, np.ndarray]:
        """Weights acting on raw (unstandardised) features: y = W x + b (+ gate * T bridge)."""
        with torch.no_grad():
            w = self.media.weight / self.sigma  # (dim, D)
            b = self.media.bias - w @ self.mu
            out = {
                "media_weight": w,
                "media_bias": b,
                "text_weight": self.text.weight,
                "bridge_gate": self.bridge_gate,
                "logit_scale": self.logit_scale,
            }
            return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in out.items()}


def apply_heads(
    heads: dict[str, np.ndarray],
    media: np.ndarray | None = None,
    text: np.ndarray | None = None,
    bridge_dim: int = 0,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Exported heads on raw features, in numpy: L2-normalised (N, dim) for media and/or text."""
    from retrieval.encoders.base import l2_normalize

    m = t = None
    if media is not None:
        own = media[:, : media.shape[1] - bridge_dim]
        m = own @ heads["media_weight"].T + heads["media_bias"]
        if bridge_dim:
            m = m + heads["bridge_gate"] * (media[:, -bridge_dim:] @ heads["text_weight"].T)
        m = l2_normalize(m)
    if text is not None:
        t = l2_normalize(text @ heads["text_weight"].T)
    return m, t


def multi_positive_clip_loss(
    m: torch.Tensor, t: torch.Tensor, positive: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE (as open_clip's ClipLoss) with several positives per row.

    `positive` (B, B) marks pairs that share the media item or the exact text; with the identity
    it reduces to ClipLoss. Shared captions (class prompts, "A frog.") are then not pushed apart.
    """
    logits = logit_scale.exp().clamp(max=100) * m @ t.T  # (B, B)
    target = positive.float()
    loss_m2t = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    loss_t2m = -(target.T / target.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (loss_m2t + loss_t2m) / 2
