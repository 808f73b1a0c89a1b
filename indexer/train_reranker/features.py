"""Locked-tower features for re-ranker training and benchmarks, computed once and cached.

Per data set: the image trunk's pooled regions (N, 14, 1280) (see retrieval.rerank.tokens) and
MiniLM's last hidden states of every distinct text (M, T, 384) with their mask. Both are taken
BEFORE any trained head, so a cache survives retraining the heads; the heads are applied when
the cache is read (`project`). A file is keyed by the towers' config digest, the manifest's
content hash and FEATURE_VERSION.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from indexer.align.data import PairItem, PairTable, manifest_digest, read_image_pairs

FEATURE_VERSION = "1"
DEFAULT_CACHE = Path(".cache/rerank")


@dataclass
class RawFeatures:
    items: list[PairItem]
    texts: list[str]
    pairs: list[tuple[int, int]]  # (item row, text row)
    regions: np.ndarray  # (N, 14, 1280) float16
    states: np.ndarray  # (M, T, 384) float16
    mask: np.ndarray  # (M, T) int8


@dataclass
class SpaceFeatures:
    """Features in one embedding space: vectors (N, D) and token sets, per side."""

    image_vecs: np.ndarray
    image_tokens: list[np.ndarray]
    text_vecs: np.ndarray
    text_tokens: list[np.ndarray]


def raw_features(manifest: Path, model: Any, preprocess: Any, tokenizer: Any, tag: str,
                 cache_dir: Path = DEFAULT_CACHE, progress: bool = True) -> RawFeatures:
    manifest = Path(manifest)
    items = read_image_pairs(manifest)
    table = PairTable.build(items)
    path = Path(cache_dir) / f"{tag}-v{FEATURE_VERSION}-{manifest.parent.name}-{manifest_digest(manifest)}.npz"
    if not path.is_file():
        regions = _image_regions(model, preprocess, [it.image for it in items], progress)
        states, mask = _text_states(model, tokenizer, table.texts, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, ids=np.array([it.item_id for it in items]), texts=np.array(table.texts),
                 regions=regions, states=states, mask=mask)
        os.replace(tmp, path)
    with np.load(path, allow_pickle=False) as d:
        if list(d["ids"]) != [it.item_id for it in items] or list(d["texts"]) != table.texts:
            raise RuntimeError(f"Feature cache {path} does not match its manifest; delete it and rerun.")
        return RawFeatures(items, table.texts, table.pairs, d["regions"], d["states"], d["mask"])


def project(raw: RawFeatures, model: Any) -> SpaceFeatures:
    """Apply the trained heads (the model's) to cached tower features: the ingestion math."""
    import torch

    from retrieval.encoders.starter_tokens import image_token_set, text_token_set, to_store
    from retrieval.encoders.starter_towers import StarterTowers

    towers = StarterTowers(model, None, None)

    with torch.inference_mode():
        iv, it = image_token_set(towers, torch.from_numpy(raw.regions).float())
        tv, tt = [], []
        for s in range(0, len(raw.texts), 256):
            v, t = text_token_set(towers, torch.from_numpy(raw.states[s : s + 256]).float(),
                                  torch.from_numpy(raw.mask[s : s + 256]).long())
            tv.append(v)
            tt.extend(t)
    return SpaceFeatures(
        image_vecs=iv.numpy().astype(np.float32), image_tokens=[to_store(x) for x in it],
        text_vecs=torch.cat(tv).numpy().astype(np.float32), text_tokens=[to_store(x) for x in tt],
    )


def _image_regions(model: Any, preprocess: Any, paths: list[Path], progress: bool,
                   batch_size: int = 32) -> np.ndarray:
    import torch
    from PIL import Image

    from retrieval.encoders.starter_tokens import image_regions

    out = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(paths), batch_size), desc="image regions", disable=not progress):
            ims = []
            for p in paths[i : i + batch_size]:
                with Image.open(p) as im:
                    ims.append(preprocess(im.convert("RGB")))
            fmap = model.visual.tower.trunk.forward_features(torch.stack(ims))  # (B, 1280, 7, 7)
            out.append(image_regions(fmap).half().numpy())
    return np.concatenate(out)


def _text_states(model: Any, tokenizer: Any, texts: list[str], progress: bool,
                 batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from retrieval.encoders.starter_towers import trim_padding

    text = model.text
    pad = text.config.pad_token_id
    chunks = []
    with torch.inference_mode():
        for i in tqdm(range(0, len(texts), batch_size), desc="text states", disable=not progress):
            ids = trim_padding(tokenizer(texts[i : i + batch_size]), pad)
            mask = (ids != pad).long()
            states = text.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
            chunks.append((states.half().numpy(), mask.numpy().astype(np.int8)))
    t = max(c[0].shape[1] for c in chunks)
    states = np.zeros((len(texts), t, text.config.hidden_size), np.float16)
    mask = np.zeros((len(texts), t), np.int8)
    row = 0
    for s, m in chunks:
        states[row : row + len(s), : s.shape[1]] = s
        mask[row : row + len(s), : m.shape[1]] = m
        row += len(s)
    return states, mask


def towers_tag() -> str:
    from retrieval.encoders.starter_model import StarterConfig

    cfg = StarterConfig.load("starter")
    return f"{cfg.name}-{cfg.digest()}"
