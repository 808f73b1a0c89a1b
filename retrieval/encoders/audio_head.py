"""Trainable audio head: time-pooled tower tokens -> a vector in a locked text space.

The artifact is one small safetensors file; its metadata holds the head config, the embedding
space it was trained into (so a head is never used against another text tower), the tower
settings its features need, and the fusion weights for spoken content (see audio_starter.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from retrieval.errors import ModelUnavailableError


@dataclass(frozen=True)
class AudioHeadConfig:
    in_dim: int = 384  # tower feature width (Whisper tiny: 384; MFCC stats baseline: 80)
    n_tokens: int = 8  # time-pooled tokens per clip (1 for a single statistics vector)
    hidden: int = 512
    out_dim: int = 256  # the shared space's dimension
    dropout: float = 0.1


class AudioHead(nn.Module):
    """Attention pooling + mean pooling over tokens, then a 2-layer MLP; output L2-normalised."""

    def __init__(self, config: AudioHeadConfig) -> None:
        super().__init__()
        self.config = config
        d = config.in_dim
        self.norm = nn.LayerNorm(d)
        self.query = nn.Parameter(torch.zeros(d))  # zero: attention starts as a plain mean
        self.mlp = nn.Sequential(
            nn.Linear(2 * d, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.out_dim),
        )
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # ln(1/0.07), trained with the head

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(tokens)  # (B, K, d)
        attn = (x @ self.query / x.shape[-1] ** 0.5).softmax(dim=-1)  # (B, K)
        pooled = torch.cat([x.mean(dim=1), torch.einsum("bk,bkd->bd", attn, x)], dim=-1)
        return nn.functional.normalize(self.mlp(pooled), dim=-1)  # (B, out_dim)


@dataclass
class AudioHeadArtifact:
    head: AudioHead
    space_key: str  # EmbeddingSpace.key() of the text side it was trained against
    version: str
    tower: dict[str, Any] = field(default_factory=dict)  # settings the features were made with
    fusion: dict[str, Any] = field(default_factory=dict)  # spoken-content weights
    extra: dict[str, Any] = field(default_factory=dict)  # data, seed, validation scores


def save_audio_head(artifact: AudioHeadArtifact, path: Path) -> None:
    from safetensors.torch import save_file

    meta = {
        "head_config": json.dumps(asdict(artifact.head.config)),
        "space_key": artifact.space_key,
        "head_version": artifact.version,
        "tower": json.dumps(artifact.tower, sort_keys=True),
        "fusion": json.dumps(artifact.fusion, sort_keys=True),
        "extra": json.dumps(artifact.extra, sort_keys=True),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in artifact.head.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def load_audio_head(path: Path) -> AudioHeadArtifact:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(
            f"Audio head artifact {path} is missing. Restore it from git, or train it "
            f"(needs the audio training data): nice crossmedia align-audio --out {path}"
        )
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    if "head_config" not in meta:
        raise ModelUnavailableError(f"{path} is not an audio head artifact (no head_config).")
    head = AudioHead(AudioHeadConfig(**json.loads(meta["head_config"])))
    head.load_state_dict(load_file(str(path)), strict=True)
    return AudioHeadArtifact(
        head=head.eval(),
        space_key=meta["space_key"],
        version=meta["head_version"],
        tower=json.loads(meta.get("tower", "{}")),
        fusion=json.loads(meta.get("fusion", "{}")),
        extra=json.loads(meta.get("extra", "{}")),
    )
