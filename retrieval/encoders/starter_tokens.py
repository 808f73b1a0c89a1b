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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from retrieval.encoders.starter_towers import StarterTowers

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


def image_token_set(
    towers: StarterTowers, regions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """regions (B, R, 1280) from `image_regions` -> (vectors (B, D), tokens (B, R, D)), normalised."""
    import torch.nn.functional as F

    b, r, c = regions.shape
    out = F.normalize(towers.image_head(regions.reshape(b * r, c)).reshape(b, r, -1), dim=-1)
    return out[:, 0], out


def text_token_set(
    towers: StarterTowers, states: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """MiniLM states (B, T, 384) and mask (B, T) -> (vectors (B, D), [tokens (n_i, D)]) normalised.

    The vector is exactly open_clip's mean-pooler + projection; the tokens are the same projection
    of each real token's state (the vector is their mean before normalisation).
    """
    import torch
    import torch.nn.functional as F

    vec = F.normalize(towers.text_head(towers.pooled_text(states, mask)), dim=-1)  # (B, D)
    proj = F.normalize(towers.text_head(states), dim=-1)  # (B, T, D)
    sets = []
    for i in range(states.shape[0]):
        rows = pool_rows(proj[i, mask[i].bool()], MAX_TOKENS - 1)  # (n, D)
        sets.append(F.normalize(torch.cat([vec[i : i + 1], rows], dim=0), dim=-1))
    return vec, sets


def pool_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """(T, D) -> (min(T, n), D): contiguous means when T > n, unchanged otherwise."""
    import torch.nn.functional as F

    if x.shape[0] <= n:
        return x
    return F.adaptive_avg_pool1d(x.T[None], n)[0].T


def to_store(tokens: torch.Tensor) -> np.ndarray:
    """(n, D) float tensor -> contiguous float16 array, checked against the budget."""
    arr = np.ascontiguousarray(tokens.detach().float().cpu().numpy().astype(TOKEN_DTYPE))
    assert arr.shape[0] <= MAX_TOKENS and arr.nbytes <= budget_bytes(arr.shape[1]), arr.shape
    return arr


def image_vectors_and_tokens(
    towers: StarterTowers, images: Sequence, batch_size: int = 32
) -> tuple[np.ndarray, list[np.ndarray]]:
    """PIL images -> vectors (N, D) float32 and token sets, from one trunk pass per batch."""
    import torch

    vecs: list[torch.Tensor] = []
    sets: list[np.ndarray] = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            fmap = towers.image_feature_map(images[i : i + batch_size])  # (B, 1280, h, w)
            v, grid = image_token_set(towers, image_regions(fmap.float()))
            vecs.append(v.cpu())
            sets.extend(to_store(x) for x in grid)
    return np.ascontiguousarray(torch.cat(vecs).numpy(), dtype=np.float32), sets


def text_vectors_and_tokens(
    towers: StarterTowers, texts: Sequence[str], batch_size: int = 64
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Strings -> vectors (N, D) float32 and token sets, from one MiniLM pass per batch."""
    import torch

    vecs: list[torch.Tensor] = []
    sets: list[np.ndarray] = []
    with torch.inference_mode():
        for states, mask in towers.iter_text_states(texts, batch_size):
            v, t = text_token_set(towers, states.float(), mask)
            vecs.append(v.cpu())
            sets.extend(to_store(x) for x in t)
    return np.ascontiguousarray(torch.cat(vecs).numpy(), dtype=np.float32), sets
