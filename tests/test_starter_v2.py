"""starter-v2 (heads v2 on the same towers): the default, loads offline, its artifact is what the
trainer's exported-heads math computes, and catalogues of v1 and v2 refuse to mix (issue 16)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from api.cli import app
from retrieval.errors import SpaceMismatchError


def test_v2_is_the_default_and_v1_stays_available():
    from retrieval.encoders import DEFAULT_MODEL, list_models
    from retrieval.encoders.starter import heads_path
    from retrieval.encoders.starter_model import StarterConfig

    assert DEFAULT_MODEL == "starter-v2" and "starter" in list_models()
    v1, v2 = StarterConfig.load("starter"), StarterConfig.load("starter-v2")
    assert (v1.heads, v2.heads) == ("starter-heads-v1", "starter-heads-v2")
    # Same towers: only the name and the heads differ.
    assert replace(v1, name="", heads="", audio_head="") == replace(
        v2, name="", heads="", audio_head=""
    )
    card = heads_path("starter-heads-v2").with_suffix(".md").read_text()
    assert "research use only" in card and "crossmedia align --manifest ../shared/data/" in card


@pytest.fixture(scope="module")
def starter_v2() -> Any:
    from retrieval.encoders import create_encoder

    return create_encoder("starter-v2", device="cpu")


def _heads(version: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    from retrieval.encoders.starter import heads_path

    t = load_file(str(heads_path(version)))
    return {
        "media_weight": t["visual.tower.head.proj.weight"],
        "media_bias": t["visual.tower.head.proj.bias"],
        "text_weight": t["text.proj.weight"],
        "bridge_gate": t["visual.bridge_gate"],
    }


@pytest.mark.slow
def test_v2_loads_offline_and_equals_its_exported_heads(starter_v2: Any, monkeypatch) -> None:
    """The artifact applied by the trainer's numpy path (apply_heads on head inputs and pooled
    MiniLM) is what the encoder computes; v2's heads are not v1's."""
    from PIL import Image

    from indexer.align.heads import apply_heads

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (starter_v2.space.model, starter_v2.space.head_version) == (
        "starter-v2",
        "starter-heads-v2",
    )
    rng = np.random.default_rng(7)
    ims = [Image.fromarray(rng.integers(0, 255, (41, 29, 3), dtype=np.uint8)) for _ in range(7)]
    texts = ["a dog on a beach", "two children playing in the snow", "a red car", "x"]
    heads = _heads("starter-heads-v2")
    towers = starter_v2.towers
    with torch.inference_mode():
        feats = starter_v2.model.visual.head_inputs(towers.image_batch(ims)).numpy()
        pooled = torch.cat([towers.pooled_text(s, m) for s, m in towers.iter_text_states(texts)])
    m, _ = apply_heads(heads, feats, None, bridge_dim=384)
    _, t = apply_heads(heads, None, pooled.numpy())
    v_img, v_txt = starter_v2.encode_images(ims), starter_v2.encode_texts(texts)
    assert v_img.shape == (7, 256) and v_txt.shape == (4, 256)
    np.testing.assert_allclose(m, v_img, atol=1e-4)
    np.testing.assert_allclose(t, v_txt, atol=1e-4)
    v1, _ = apply_heads(_heads("starter-heads-v1"), feats, None, bridge_dim=384)
    assert np.abs(v1 - v_img).max() > 0.1


@pytest.mark.slow
def test_v1_and_v2_refuse_to_mix_with_the_reindex_fix(tmp_path: Path, monkeypatch) -> None:
    """A new catalogue gets the default (v2); one built with v1 keeps v1 when no model is named;
    naming the other model is refused either way, with the re-index fix."""
    from PIL import Image

    from retrieval.catalogue import Catalogue

    monkeypatch.delenv("CROSSMEDIA_DB_URL", raising=False)
    monkeypatch.delenv("CROSSMEDIA_DATA_DIR", raising=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(11)
    for i in range(3):
        im = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        im.save(photos / f"p{i}.png")
    runner = CliRunner()
    for built_with, other in (("starter", "starter-v2"), (None, "starter")):
        data_dir = tmp_path / f"cat-{built_with}"
        args = ["index", str(photos), "--data-dir", str(data_dir), "--json"]
        first = runner.invoke(app, args + (["--model", built_with] if built_with else []))
        assert first.exit_code == 0, first.output
        assert json.loads(first.stdout)["added"] == {"image": 3}
        again = runner.invoke(app, args)  # no model named: the catalogue's own
        assert again.exit_code == 0, again.output
        mixed = runner.invoke(app, [*args, "--model", other])
        assert mixed.exit_code != 0 and isinstance(mixed.exception, SpaceMismatchError)
        message = str(mixed.exception)
        assert "'starter'" in message and "'starter-v2'" in message
        assert "starter-heads-v1" in message and "starter-heads-v2" in message
        assert "new --data-dir" in message and "re-embedding everything" in message
        with Catalogue.open(data_dir, create=False) as cat:
            assert cat.space is not None
            assert cat.space.model == (built_with or "starter-v2")


def test_each_starter_space_binds_its_own_audio_head_and_reranker():
    """v2's audio head was trained in v2's space (its config names it); v2 ships no re-ranker
    yet, so "auto" searches v2 first-stage only; the training jobs repeat the shipped heads'
    recorded config for their fold heads."""
    from indexer.align.heads import HeadConfig
    from indexer.train_reranker.oof import shipped_head_config
    from retrieval.encoders.audio_head import load_audio_head
    from retrieval.encoders.starter import heads_path
    from retrieval.encoders.starter_model import StarterConfig
    from retrieval.rerank import SHIPPED

    for name, heads, audio in (
        ("starter", "starter-heads-v1", "starter-audio-head-v1"),
        ("starter-v2", "starter-heads-v2", "starter-audio-head-v2"),
    ):
        cfg = StarterConfig.load(name)
        assert cfg.audio_head == audio
        art = load_audio_head(heads_path(cfg.audio_head))
        assert art.space_key == f"{name}|{heads}|256"
    assert SHIPPED.get("starter") == "starter-reranker-v2" and "starter-v2" not in SHIPPED
    # The towers' digest (feature-cache key) ignores the trained parts: the one the shipped
    # heads recorded still holds.
    from safetensors import safe_open

    with safe_open(str(heads_path("starter-heads-v2")), framework="pt") as f:
        towers = (f.metadata() or {})["towers"]
    assert towers == f"starter-{StarterConfig.load('starter').digest()}-v1"
    v2 = shipped_head_config("starter-v2")
    assert (v2.distill, v2.batch_size, v2.dropout) == (1.0, 1024, 0.6)
    assert replace(shipped_head_config("starter"), bridge_dim=0) == replace(
        HeadConfig(), bridge_dim=0
    )


def test_train_reranker_command_names_its_space_and_sets(tmp_path: Path) -> None:
    from indexer.train_reranker import TrainRerankerConfig

    cfg = TrainRerankerConfig(out=tmp_path / "r.safetensors")
    assert "--model" not in cfg.command() and "--sets" not in cfg.command()
    cfg.encoder, cfg.sets = "starter-v2", ("flickr8k", "coco_mini")
    assert "--model starter-v2 --sets flickr8k,coco_mini" in cfg.command()
