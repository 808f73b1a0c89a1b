"""Compact token sets for the re-ranker, made from the starter towers in the SAME forward pass as
the vectors.

A token set is float16 (n, 256), n <= MAX_TOKENS, rows L2-normalised, in the shared space:

- row 0 is always the item's own vector (what the first stage compared);
- image: the trunk's last feature map (1280 x 7 x 7 at 224 px) average-pooled on a 2x2 and a 3x3
  grid (13 regions), each region sent through the trained image head (trunk projection + label
  bridge): "what this part of the picture looks like" in the shared space. 14 rows.
- text: MiniLM's last hidden states of the real tokens sent through the trained text projection
  (the text vector is the projection of their mean), pooled to at most 15 rows in order.

Budget: MAX_TOKENS x 256 dims x 2 bytes = 16 x 256 x 2 = 8192 bytes per item at most
(image 7168 bytes, a ~12-word caption ~7 KB).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from retrieval.modality import Modality

MAX_TOKENS = 16
TOKEN_DTYPE = np.float16
REGION_GRIDS = (2, 3)  # 4 + 9 = 13 regions + the global vector = 14 image tokens


def budget_bytes(dim: int, n_tokens: int = MAX_TOKENS) -> int:
    return n_tokens * dim * np.dtype(TOKEN_DTYPE).itemsize


def image_regions(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) trunk feature map -> (B, 1 + 4 + 9, C): global mean, then 2x2 and 3x3 regions."""
    import torch
    import torch.nn.functional as F

    parts = [fmap.mean(dim=(2, 3))[:, None]]  # (B, 1, C): equals the trunk's avg-pooled output
    for g in REGION_GRIDS:
        parts.append(F.adaptive_avg_pool2d(fmap, g).flatten(2).transpose(1, 2))  # (B, g*g, C)
    return torch.cat(parts, dim=1)


def image_head(visual: Any, pooled: torch.Tensor) -> torch.Tensor:
    """The starter image head on pooled trunk features (..., 1280) -> (..., D), unnormalised."""
    return visual.tower.head(pooled) + visual.bridge_gate * visual.bridge_proj(visual.bridge(pooled))


def image_token_set(visual: Any, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """regions (B, R, 1280) from `image_regions` -> (vectors (B, D), tokens (B, R, D)), normalised."""
    import torch.nn.functional as F

    b, r, c = regions.shape
    out = F.normalize(image_head(visual, regions.reshape(b * r, c)).reshape(b, r, -1), dim=-1)
    return out[:, 0], out


def text_token_set(text: Any, states: torch.Tensor, mask: torch.Tensor
                   ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """MiniLM states (B, T, 384) and mask (B, T) -> (vectors (B, D), [tokens (n_i, D)]) normalised.

    The vector is exactly open_clip's mean-pooler + projection; the tokens are the same projection
    of each real token's state (the vector is their mean before normalisation).
    """
    import torch.nn.functional as F

    vec = F.normalize(text.proj(text.pooler(_StateOutput(states), mask)), dim=-1)  # (B, D)
    proj = F.normalize(text.proj(states), dim=-1)  # (B, T, D)
    sets = []
    for i in range(states.shape[0]):
        real = proj[i, mask[i].bool()]  # (n, D)
        rows = pool_rows(real, MAX_TOKENS - 1)
        sets.append(F.normalize(_cat(vec[i : i + 1], rows), dim=-1))
    return vec, sets


def pool_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """(T, D) -> (min(T, n), D): contiguous means when T > n, unchanged otherwise."""
    import torch.nn.functional as F

    if x.shape[0] <= n:
        return x
    return F.adaptive_avg_pool1d(x.T[None], n)[0].T


def _cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.cat([a, b], dim=0)


class _StateOutput:
    """What open_clip's poolers read from a Hugging Face output: `.last_hidden_state`."""

    def __init__(self, states: torch.Tensor) -> None:
        self.last_hidden_state = states


def to_store(tokens: torch.Tensor) -> np.ndarray:
    """(n, D) float tensor -> contiguous float16 array, checked against the budget."""
    arr = np.ascontiguousarray(tokens.detach().float().cpu().numpy().astype(TOKEN_DTYPE))
    assert arr.shape[0] <= MAX_TOKENS and arr.nbytes <= budget_bytes(arr.shape[1]), arr.shape
    return arr


def starter_encode_with_tokens(encoder: Any, modality: Modality, items: Sequence,
                               batch_size: int | None = None
                               ) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """StarterEncoder.encode_with_tokens: vectors and token sets from ONE pass of each tower.

    Audio keeps its own path (window fusion with transcripts) and has no token sets yet.
    """
    import torch

    from retrieval.encoders.starter import trim_padding
    from retrieval.modality import Modality

    if modality == Modality.AUDIO or not items:
        return encoder.encode(modality, items, batch_size), None
    vecs: list[torch.Tensor] = []
    sets: list[np.ndarray] = []
    with torch.inference_mode():
        if modality == Modality.IMAGE:
            bs = batch_size or 32
            trunk = encoder.model.visual.tower.trunk
            for i in range(0, len(items), bs):
                batch = torch.stack([encoder.preprocess(im) for im in items[i : i + bs]])
                fmap = trunk.forward_features(batch.to(encoder.device))  # (B, 1280, h, w)
                v, grid = image_token_set(encoder.model.visual, image_regions(fmap.float()))
                vecs.append(v.cpu())
                sets.extend(to_store(x) for x in grid)
        else:
            bs = batch_size or 64
            text = encoder.model.text
            pad = text.config.pad_token_id
            for i in range(0, len(items), bs):
                ids = trim_padding(encoder.tokenizer(list(items[i : i + bs])), pad).to(encoder.device)
                mask = (ids != pad).long()
                states = text.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
                v, t = text_token_set(text, states.float(), mask)
                vecs.append(v.cpu())
                sets.extend(to_store(x) for x in t)
    return np.ascontiguousarray(torch.cat(vecs).numpy(), dtype=np.float32), sets
