"""Locked-tower features of image-text manifests, computed once per manifest and cached on disk.

Both image-text trainers read them: `crossmedia align` (pooled trunk | label bridge per image,
pooled MiniLM per text) and `crossmedia train-reranker` (the trunk's 14 pooled regions per image,
MiniLM's last hidden states per text). One trunk pass per image batch and MiniLM passes give all four, through `StarterTowers`. Everything is taken BEFORE any trained head,
so a cache survives retraining the heads.

A file is `<cache>/<towers tag>-<set>-<manifest sha256[:16]>.npz`; the tag holds the towers'
config digest and FEATURE_VERSION, so a change of towers, manifest or layout is a new file,
never a stale read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.training.pairs import PairItem, PairTable, manifest_digest, read_image_pairs

if TYPE_CHECKING:
    from retrieval.encoders.starter_towers import StarterTowers

FEATURE_VERSION = "2"
IMAGE_BATCH = 32
# MiniLM batches pad to their longest text, and the padded width moves fp16 roundings of the
# states (178 of 1879 texts differ by 1 ulp between batch 64 and 128): the pooled features keep
# the batch the shipped heads were trained with, the states the one the shipped re-ranker was.
POOLED_BATCH = 64
STATES_BATCH = 128


@dataclass
class ManifestFeatures:
    items: list[PairItem]
    texts: list[str]  # unique strings, first-seen order (PairTable)
    pairs: list[tuple[int, int]]  # (item row, text row)
    regions: np.ndarray  # (N, 14, 1280) float16, see starter_tokens.image_regions
    states: np.ndarray  # (M, T, 384) float16, MiniLM last hidden states
    mask: np.ndarray  # (M, T) int8, 1 = real token
    head_inputs: np.ndarray | None = None  # (N, 1280 + 384) float32: [pooled trunk | bridge]
    pooled_text: np.ndarray | None = None  # (M, 384) float32: open_clip's mean pooler


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write atomically: a crash leaves no half file that a rerun would trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def cached_npz(path: Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    arrays = make()
    save_npz(path, **arrays)
    return arrays


def towers_tag() -> str:
    from retrieval.encoders.starter_model import StarterConfig

    cfg = StarterConfig.load("starter")
    return f"{cfg.name}-{cfg.digest()}-v{FEATURE_VERSION}"


class FeatureCache:
    """Tower features per manifest. Its towers are its own (`open_towers`, untrained heads, the
    label bridge's class texts computed here), opened only when something must be computed, so
    the cache never depends on whichever heads a caller has loaded."""

    def __init__(self, cache_dir: Path, device: str = "cpu", progress: bool = True) -> None:
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.progress = progress
        self.tag = towers_tag()
        self._towers: StarterTowers | None = None
        self._class_text: np.ndarray | None = None
        self._bridge_set = False

    @property
    def class_text(self) -> np.ndarray:
        """MiniLM(bridge prompt of each ImageNet class), pooled: (1000, 384) float32."""
        if self._class_text is None:
            from retrieval.encoders.starter_model import StarterConfig, imagenet_class_names

            cfg = StarterConfig.load("starter")
            prompts = [cfg.bridge_prompt.format(c) for c in imagenet_class_names()]
            path = self.cache_dir / f"{self.tag}-class_text.npz"
            make = lambda: {"x": self.text_features(prompts, POOLED_BATCH, False)[2]}  # noqa: E731
            self._class_text = cached_npz(path, make)["x"]
        return self._class_text

    def _opened(self) -> StarterTowers:
        if self._towers is None:
            from retrieval.encoders.starter import open_towers

            self._towers = open_towers(self.device)
        return self._towers

    @property
    def towers(self) -> StarterTowers:
        """The towers, with the label bridge's class texts in place (image features need them)."""
        towers = self._opened()
        if not self._bridge_set:
            import torch

            towers.visual.bridge.class_text.copy_(torch.from_numpy(self.class_text))
            self._bridge_set = True
        return towers

    def path(self, manifest: Path) -> Path:
        name = f"{self.tag}-{Path(manifest).parent.name}-{manifest_digest(manifest)}.npz"
        return self.cache_dir / name

    def load(self, manifest: Path) -> ManifestFeatures:
        """Features of one manifest's items and texts, from the cache when it has them."""
        manifest = Path(manifest)
        items = read_image_pairs(manifest)
        if not items:
            raise ValueError(f"{manifest} has no items with both an image and a caption or label.")
        table = PairTable.build(items)
        path = self.path(manifest)
        d = cached_npz(path, lambda: self._compute(items, table.texts))
        if list(d["ids"]) != [it.item_id for it in items] or list(d["texts"]) != table.texts:
            raise RuntimeError(
                f"Feature cache {path} does not match its manifest; delete it and rerun."
            )
        return ManifestFeatures(
            items,
            table.texts,
            table.pairs,
            d["regions"],
            d["states"],
            d["mask"],
            d["head_inputs"],
            d["pooled_text"],
        )

    def _compute(self, items: list[PairItem], texts: list[str]) -> dict[str, np.ndarray]:
        head_inputs, regions = self.image_features([it.image for it in items])
        states, mask, _ = self.text_features(texts, STATES_BATCH, self.progress)
        pooled = self.text_features(texts, POOLED_BATCH, self.progress)[2]
        return {
            "ids": np.array([it.item_id for it in items]),
            "texts": np.array(texts),
            "head_inputs": head_inputs,
            "regions": regions,
            "pooled_text": pooled,
            "states": states,
            "mask": mask,
        }

    def image_features(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        """One trunk pass per batch -> head inputs (N, 1280 + 384) float32, regions (N, 14, 1280)
        float16. The pooled part is the trunk's own head on the map: `visual.head_inputs`."""
        import torch

        from retrieval.encoders.starter_tokens import image_regions

        visual = self.towers.visual
        inputs, regions = [], []
        with torch.inference_mode():
            for fmap in self.towers.iter_image_feature_maps(paths, IMAGE_BATCH, self.progress):
                pooled = visual.tower.trunk.forward_head(fmap)  # (B, 1280), as trunk(image)
                inputs.append(torch.cat([pooled, visual.bridge(pooled)], dim=-1).float().numpy())
                regions.append(image_regions(fmap).half().numpy())
        return np.concatenate(inputs), np.concatenate(regions)

    def text_features(
        self, texts: list[str], batch_size: int, progress: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One MiniLM pass -> states (M, T, 384) float16, mask (M, T) int8 (T = the
        longest text), pooled (M, 384) float32."""
        import torch

        chunks = []
        towers = self._opened()  # the text side does not read the bridge
        with torch.inference_mode():
            for s, m in towers.iter_text_states(texts, batch_size, progress, "text"):
                pooled = towers.pooled_text(s, m).float().numpy()
                chunks.append((s.half().numpy(), m.numpy().astype(np.int8), pooled))
        width = towers.text.config.hidden_size
        t = max((c[0].shape[1] for c in chunks), default=1)
        states = np.zeros((len(texts), t, width), np.float16)
        mask = np.zeros((len(texts), t), np.int8)
        row = 0
        for s, m, _ in chunks:
            states[row : row + len(s), : s.shape[1]] = s
            mask[row : row + len(s), : m.shape[1]] = m
            row += len(s)
        pooled = (
            np.concatenate([c[2] for c in chunks]) if chunks else np.zeros((0, width), np.float32)
        )
        return states, mask, pooled
