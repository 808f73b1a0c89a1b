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


def with_class_knowledge(data: AlignData, c: int = 13, seed: int = 7) -> AlignData:
    """Teacher = a fixed linear classifier of the media features; class prompts = random text
    rows, two templates of the same names."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(c, data.media.shape[1])).astype(np.float32)
    logits = 3 * data.media @ w.T
    e = np.exp(logits - logits.max(1, keepdims=True))
    data.teacher = (e / e.sum(1, keepdims=True)).astype(np.float32)
    base = rng.normal(size=(c, data.text.shape[1]))
    data.class_text = np.stack([base + 0.1 * rng.normal(size=base.shape) for _ in range(2)])
    data.class_text = data.class_text.astype(np.float32)
    return data


def test_distillation_pulls_class_ranking_toward_teacher():
    """With distillation the image embedding ranks the class prompts as the teacher does, even
    when the caption pairs say nothing about those classes."""
    from indexer.align.classes import class_name_proxy

    data = with_class_knowledge(synthetic(n=113))
    agree = {}
    for weight in (0.0, 1.0):
        res = train_heads(
            data, HeadConfig(**{**CFG, "epochs": 10, "distill": weight}), progress=False
        )
        m, t = apply_heads(res.heads, data.media, data.class_text[1])
        agree[weight] = float(np.mean((m @ t.T).argmax(1) == data.teacher.argmax(1)))
        assert "class_proxy" in res.val
    assert agree[1.0] > agree[0.0] + 0.1, agree  # measured 0.40 vs 0.25
    proxy = class_name_proxy(m, t, data.teacher, range(len(m)), min_prob=0.0)
    assert proxy["classes"] >= 2 and 0.0 <= proxy["i2t R@1"] <= 1.0


def test_distill_without_teacher_is_an_error():
    with pytest.raises(ValueError, match="teacher"):
        train_heads(synthetic(), HeadConfig(**{**CFG, "distill": 1.0}), progress=False)


def test_distillation_is_seeded_resumable_and_tempered(tmp_path):
    """Same seed, same heads; a checkpointed rerun resumes to the same result; a tempered
    teacher (T=2) trains other heads than T=1."""
    data = with_class_knowledge(synthetic(n=71, seed=4))
    cfg = HeadConfig(**{**CFG, "epochs": 3, "distill": 1.0})
    a = train_heads(data, cfg, tmp_path, progress=False)
    b = train_heads(data, cfg, progress=False)
    resumed = train_heads(data, cfg, tmp_path, progress=False)
    for k in a.heads:
        np.testing.assert_array_equal(a.heads[k], b.heads[k])
        np.testing.assert_array_equal(a.heads[k], resumed.heads[k])
    warm = train_heads(
        data,
        HeadConfig(**{**CFG, "epochs": 3, "distill": 1.0, "distill_temperature": 2.0}),
        progress=False,
    )
    assert not np.array_equal(a.heads["media_weight"], warm.heads["media_weight"])
