"""The re-ranker's features in one embedding space: the shared per-manifest tower features
(indexer.training.features: regions and MiniLM states, taken before any head) projected through
a starter model's heads, the ingestion's math (retrieval.encoders.starter_tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from indexer.training.features import ManifestFeatures

if TYPE_CHECKING:
    from retrieval.encoders.starter_towers import StarterTowers


@dataclass
class SpaceFeatures:
    """Features in one embedding space: vectors (N, D) and token sets, per side."""

    image_vecs: np.ndarray
    image_tokens: list[np.ndarray]
    text_vecs: np.ndarray
    text_tokens: list[np.ndarray]


def project(raw: ManifestFeatures, towers: StarterTowers) -> SpaceFeatures:
    """Apply the heads in `towers` (whichever are loaded) to cached tower features."""
    import torch

    from retrieval.encoders.starter_tokens import image_token_set, text_token_set, to_store

    with torch.inference_mode():
        iv, it = image_token_set(towers, torch.from_numpy(raw.regions).float())
        tv, tt = [], []
        for s in range(0, len(raw.texts), 256):
            v, t = text_token_set(
                towers,
                torch.from_numpy(raw.states[s : s + 256]).float(),
                torch.from_numpy(raw.mask[s : s + 256]).long(),
            )
            tv.append(v)
            tt.extend(t)
    return SpaceFeatures(
        image_vecs=iv.numpy().astype(np.float32),
        image_tokens=[to_store(x) for x in it],
        text_vecs=torch.cat(tv).numpy().astype(np.float32),
        text_tokens=[to_store(x) for x in tt],
    )
