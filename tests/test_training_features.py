"""The shared tower-feature cache of the image-text trainers (indexer/training/features.py):
one trunk pass gives what `align` reads (head inputs) and what `train-reranker` reads (regions),
equal to the towers' own passes; a second load reads the file; a changed manifest is a new file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from indexer.training.features import FeatureCache


def _manifest(folder: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        size = (int(rng.integers(17, 61)), int(rng.integers(17, 61)))
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        captions = [f"a picture number {i}", "a shared caption"] if i % 2 else []
        row = {"id": f"toy-{i}", "image": f"{i}.png"}
        row.update({"captions": captions} if captions else {"label": f"thing {i % 3}"})
        lines.append(json.dumps(row))
    (folder / "items.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "items.jsonl"


@pytest.mark.slow
def test_cache_matches_the_towers_and_is_reused(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "toy", 7, seed=11)
    cache = FeatureCache(tmp_path / "cache", progress=False)
    feats = cache.load(manifest)
    towers = cache.towers
    with torch.inference_mode():
        batch = towers.image_batch([Image.open(it.image).convert("RGB") for it in feats.items])
        head_inputs = towers.visual.head_inputs(batch).numpy()
        states, mask = towers.text_states(feats.texts)
        pooled = towers.pooled_text(states, mask).numpy()
    assert feats.head_inputs.shape == (7, 1280 + 384) and feats.regions.shape == (7, 14, 1280)
    np.testing.assert_allclose(feats.head_inputs, head_inputs, rtol=0, atol=1e-6)
    # region 0 is the global mean of the same feature map: the pooled trunk, in float16
    np.testing.assert_allclose(feats.regions[:, 0], head_inputs[:, :1280], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(feats.pooled_text, pooled, rtol=0, atol=1e-6)
    t = states.shape[1]
    assert feats.mask.shape[1] == t and np.array_equal(feats.mask, mask.numpy())
    np.testing.assert_allclose(
        feats.states.astype(np.float32), states.numpy(), atol=2e-3, rtol=2e-3
    )
    assert "a shared caption" in feats.texts and "a photo of a thing 0" in feats.texts

    files = sorted((tmp_path / "cache").glob("*.npz"))
    again = FeatureCache(tmp_path / "cache", progress=False).load(manifest)
    assert sorted((tmp_path / "cache").glob("*.npz")) == files
    assert np.array_equal(again.head_inputs, feats.head_inputs)
    assert np.array_equal(again.states, feats.states)

    manifest.write_text(manifest.read_text().replace("toy-6", "toy-6b"))
    changed = cache.load(manifest)
    assert len(sorted((tmp_path / "cache").glob("*.npz"))) == len(files) + 1
    assert changed.items[-1].item_id == "toy-6b"
