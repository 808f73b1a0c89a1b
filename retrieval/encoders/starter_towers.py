"""The starter model's locked towers and trained heads: the one place their forward passes are
written. The encoder, the re-ranker's token sets and every trainer go through `StarterTowers`, so
vectors, token sets and training features cannot drift apart.

Shapes: MiniLM states (B, T, 384) with mask (B, T) (1 = real token); the EfficientNet trunk's last
feature map (B, 1280, h, w), 7 x 7 at 224 px; pooled trunk features (B, 1280); shared space (B, D).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    import torch
    from PIL import Image


def trim_padding(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop trailing all-padding columns: same outputs (masked, absolute positions), far less work.

    The HF tokenizer pads every batch to the full context (128), while captions are ~15 tokens.
    """
    real = (ids != pad_id).any(dim=0).nonzero()
    return ids[:, : int(real.max()) + 1] if len(real) else ids[:, :1]


class _StateOutput:
    """What open_clip's poolers read from a Hugging Face output: `.last_hidden_state`."""

    def __init__(self, states: torch.Tensor) -> None:
        self.last_hidden_state = states


def load_rgb(path: Path | str) -> Image.Image:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


class StarterTowers:
    """open_clip `CustomTextCLIP` of the starter (see starter_model.py) with its image transform
    and tokenizer. Call inside `torch.inference_mode()` (or with grad, for trainers)."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, device: str = "cpu") -> None:
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device

    @property
    def text(self) -> Any:  # open_clip HFTextEncoder (MiniLM + mean pooler + linear projection)
        return self.model.text

    @property
    def visual(self) -> Any:  # StarterVisual
        return self.model.visual

    @property
    def pad_id(self) -> int:
        return int(self.text.config.pad_token_id)

    # -- text ----------------------------------------------------------------------------------
    def text_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of strings -> MiniLM last hidden states (B, T, 384), mask (B, T) long."""
        ids = trim_padding(self.tokenizer(list(texts)), self.pad_id).to(self.device)  # (B, T)
        mask = (ids != self.pad_id).long()
        states = self.text.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        return states, mask

    def iter_text_states(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False, desc: str = "text"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in tqdm(range(0, len(texts), batch_size), desc=desc, disable=not progress):
            yield self.text_states(texts[i : i + batch_size])

    def pooled_text(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 384), (B, T) -> (B, 384): open_clip's mean pooler over the real tokens."""
        return self.text.pooler(_StateOutput(states), mask)

    def text_head(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 384) -> (..., D), unnormalised: the trained text projection."""
        return self.text.proj(x)

    # -- image ---------------------------------------------------------------------------------
    def image_batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> the eval transform's (B, 3, H, W) batch on the device."""
        import torch

        return torch.stack([self.preprocess(im) for im in images]).to(self.device)

    def image_feature_map(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> the trunk's last feature map (B, 1280, h, w)."""
        return self.visual.tower.trunk.forward_features(self.image_batch(images))

    def iter_image_feature_maps(
        self,
        paths: Sequence[Path],
        batch_size: int = 32,
        progress: bool = False,
        desc: str = "images",
    ) -> Iterator[torch.Tensor]:
        """Image files -> feature maps, one batch at a time."""
        for i in tqdm(range(0, len(paths), batch_size), desc=desc, disable=not progress):
            yield self.image_feature_map([load_rgb(p) for p in paths[i : i + batch_size]])

    def image_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """(..., 1280) pooled trunk features -> (..., D), unnormalised (see StarterVisual.project)."""
        return self.visual.project(pooled)
