from __future__ import annotations

import numpy as np
import pytest
import torch

from indexer.align import AlignData, HeadConfig, apply_heads, train_heads
from indexer.align.heads import ContrastiveHeads, multi_positive_clip_loss


def synthetic(n: int = 97, classes: int = 11, d_media: int = 17, d_text: int = 7, seed: int = 3):
    """Media = noisy random map of a class code; texts = one per class (shared, like CIFAR prompts)."""
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(classes, d_text)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    mix = rng.normal(size=(d_text, d_media)).astype(np.float32)
    media = codes[labels] @ mix + 0.3 * rng.normal(size=(n, d_media)).astype(np.float32)
    split = ["train" if i % 10 < 7 else ("val" if i % 10 < 8 else "test") for i in range(n)]
    pairs = np.stack([np.arange(n), labels], axis=1)
    return AlignData(media=media.astype(np.float32), text=codes, pairs=pairs, split=split)


CFG = dict(dim=8, epochs=6, batch_size=16, lr=3e-3, seed=5)


def test_same_seed_same_heads_and_learns():
    data = synthetic()
    a = train_heads(data, HeadConfig(**CFG), progress=False)
    b = train_heads(data, HeadConfig(**CFG), progress=False)
    for k in a.heads:
        np.testing.assert_array_equal(a.heads[k], b.heads[k])
    assert a.val["mean"]["score"] > 0.5  # chance t2m R@1 here is ~1/9
    c = train_heads(data, HeadConfig(**{**CFG, "seed": 6}), progress=False)
    assert not np.array_equal(a.heads["media_weight"], c.heads["media_weight"])


def test_resume_continues_to_identical_result(tmp_path):
    data = synthetic()
    straight = train_heads(data, HeadConfig(**CFG), progress=False)
    # Simulate a crash in epoch 4 (after 3 checkpoints), then rerun the same call.
    import indexer.align.train as train_mod

    calls = {"n": 0}
    real = train_mod.evaluate

    def crash_on_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    train_mod.evaluate = crash_on_fourth
    try:
        with pytest.raises(KeyboardInterrupt):
            train_heads(data, HeadConfig(**CFG), tmp_path, progress=False)
    finally:
        train_mod.evaluate = real
    assert len(list(tmp_path.glob("heads-*.pt"))) == 1
    resumed = train_heads(data, HeadConfig(**CFG), tmp_path, progress=False)
    assert [h["epoch"] for h in resumed.history] == list(range(1, 7))
    for k in straight.heads:
        np.testing.assert_allclose(resumed.heads[k], straight.heads[k], rtol=1e-6, atol=1e-7)


def test_fixed_text_head_stays_fixed():
    data = synthetic()
    w = (
        np.linalg.qr(np.random.default_rng(0).normal(size=(7, 7)))[0][:, :7]
        .T[:8]
        .astype(np.float32)
    )
    w = np.vstack([w, np.zeros((1, 7), np.float32)])  # (8, 7)
    res = train_heads(data, HeadConfig(**CFG), progress=False, text_weight=w)
    np.testing.assert_array_equal(res.heads["text_weight"], w)


def test_exported_heads_match_module_on_raw_features():
    data = synthetic()
    cfg = HeadConfig(dim=8, bridge_dim=7, seed=1)
    media = np.concatenate([data.media, data.text[data.pairs[:, 1]]], axis=1)  # bridge = own text
    model = ContrastiveHeads(media.shape[1], 7, cfg)
    torch.nn.init.normal_(model.media.weight)
    model.mu.normal_()
    model.sigma.uniform_(0.5, 2.0)
    with torch.no_grad():
        want = model.encode_media(torch.from_numpy(media)).numpy()
    got, _ = apply_heads(model.export(), media, None, bridge_dim=7)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_loss_reduces_to_clip_loss_with_identity_positives():
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(0)
    m = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(7, 5, generator=g), dim=-1)
    scale = torch.tensor(2.0)
    ours = multi_positive_clip_loss(m, t, torch.eye(7, dtype=torch.bool), scale)
    ref = ClipLoss()(m, t, scale.exp())
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_views_are_seeded_and_used():
    data = synthetic()
    rng = np.random.default_rng(1)
    views = [data.media + 0.1 * rng.normal(size=data.media.shape).astype(np.float32)]
    with_views = AlignData(data.media, data.text, data.pairs, data.split, views=views)
    a = train_heads(with_views, HeadConfig(**CFG), progress=False)
    b = train_heads(with_views, HeadConfig(**CFG), progress=False)
    np.testing.assert_array_equal(a.heads["media_weight"], b.heads["media_weight"])
    plain = train_heads(data, HeadConfig(**CFG), progress=False)
    assert not np.array_equal(a.heads["media_weight"], plain.heads["media_weight"])
    with pytest.raises(ValueError, match="view has shape"):
        AlignData(data.media, data.text, data.pairs, data.split, views=[data.media[:3]])
