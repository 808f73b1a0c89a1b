"""Locked-tower features of the starter model, computed once and cached on disk.

The towers never change during head training, so each image and text goes through them once.
A cache file is keyed by the towers' config digest, the manifest's content hash and
FEATURE_VERSION; any change to one of them means a new file, never a stale read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from indexer.align.data import PairItem, manifest_digest
from retrieval.encoders.starter_towers import trim_padding

FEATURE_VERSION = "1"
DEFAULT_CACHE = Path(".cache/align")


def _atomic_save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def pooled_text_features(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """Mean-pooled MiniLM states of the starter's text tower, before any projection: (N, 384)."""
    import torch

    text = model.text
    device = next(text.parameters()).device
    out = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(texts), batch_size), desc="text", disable=not progress):
            ids = trim_padding(tokenizer(list(texts[i : i + batch_size])), text.config.pad_token_id)
            ids = ids.to(device)
            mask = (ids != text.config.pad_token_id).long()
            states = text.transformer(input_ids=ids, attention_mask=mask)
            out.append(text.pooler(states, mask).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, text.config.hidden_size), np.float32)


class StarterFeatures:
    """Caches `head_inputs` of images and pooled MiniLM features of texts for the starter towers."""

    def __init__(self, cache_dir: Path = DEFAULT_CACHE, device: str = "cpu") -> None:
        from retrieval.encoders.starter import open_towers
        from retrieval.encoders.starter_model import StarterConfig, imagenet_class_names

        self.cache_dir = Path(cache_dir)
        self.device = device
        self.cfg = StarterConfig.load("starter")
        towers = open_towers(device)
        self.model, self.preprocess, self.tokenizer = towers.model, towers.preprocess, towers.tokenizer
        self.tag = f"{self.cfg.name}-{self.cfg.digest()}-v{FEATURE_VERSION}"
        prompts = [self.cfg.bridge_prompt.format(c) for c in imagenet_class_names()]
        path = self.cache_dir / f"{self.tag}-class_text.npz"
        class_text = self._cached(path, lambda: {"x": self.text_features(prompts, progress=False)})[
            "x"
        ]
        self.set_class_text(class_text)

    def set_class_text(self, class_text: np.ndarray) -> None:
        import torch

        self.model.visual.bridge.class_text.copy_(torch.from_numpy(class_text))
        self.class_text = class_text

    def _cached(
        self, path: Path, make: Callable[[], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        arrays = make()
        _atomic_save(path, **arrays)
        return arrays

    def text_features(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = True
    ) -> np.ndarray:
        return pooled_text_features(self.model, self.tokenizer, texts, batch_size, progress)

    def image_features(self, paths: Sequence[Path], batch_size: int = 32) -> np.ndarray:
        """[pooled trunk | label bridge] per image: float32 (N, 1280 + 384)."""
        import torch
        from PIL import Image

        out = []
        with torch.inference_mode():
            for i in tqdm(range(0, len(paths), batch_size), desc="images"):
                ims = []
                for p in paths[i : i + batch_size]:
                    with Image.open(p) as im:
                        ims.append(self.preprocess(im.convert("RGB")))
                batch = torch.stack(ims).to(self.device)
                out.append(self.model.visual.head_inputs(batch).float().cpu().numpy())
        return np.concatenate(out)

    def for_manifest(
        self, manifest: Path, items: list[PairItem], texts: list[str]
    ) -> dict[str, np.ndarray]:
        """Features of one manifest's items and texts, from the cache when it has them."""
        path = (
            self.cache_dir
            / f"{self.tag}-{Path(manifest).parent.name}-{manifest_digest(manifest)}.npz"
        )

        def make() -> dict[str, np.ndarray]:
            return {
                "ids": np.array([it.item_id for it in items]),
                "images": self.image_features([it.image for it in items]),
                "texts": np.array(texts),
                "text_features": self.text_features(texts),
            }

        data = self._cached(path, make)
        if list(data["ids"]) != [it.item_id for it in items] or list(data["texts"]) != list(texts):
            raise RuntimeError(
                f"Feature cache {path} does not match its manifest; delete it and rerun."
            )
        return data
