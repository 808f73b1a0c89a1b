"""Out-of-fold plumbing for re-ranker training: fold assignment, held-out splits, head swapping."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from indexer.train_reranker.features import SpaceFeatures
from indexer.train_reranker.oof import HOLDOUT, fold_of, heads_loaded, holdout_splits
from indexer.train_reranker.tasks import build_tasks
from indexer.train_reranker.tasks import in_fold as _in_fold
from indexer.training.features import ManifestFeatures as RawFeatures
from indexer.training.pairs import PairItem
from retrieval.splits import split_of

IDS = [f"item-{i}" for i in range(1009)]


def test_fold_of_is_deterministic_balanced_and_checked() -> None:
    folds = [fold_of(i, 4) for i in IDS]
    assert folds == [fold_of(i, 4) for i in IDS]
    counts = Counter(folds)
    assert set(counts) == {0, 1, 2, 3}
    assert all(0.2 < c / len(IDS) < 0.3 for c in counts.values()), counts
    with pytest.raises(ValueError, match="k >= 2"):
        fold_of("x", 1)


def test_holdout_splits_hold_out_each_train_item_exactly_once() -> None:
    splits = [split_of(i) for i in IDS]
    k = 5
    held = Counter()
    for f in range(k):
        s = holdout_splits(IDS, splits, k, f)
        for i, (before, after) in enumerate(zip(splits, s, strict=True)):
            if after == HOLDOUT:
                assert before == "train" and fold_of(IDS[i], k) == f
                held[i] += 1
            else:
                assert after == before
    assert sorted(held) == [i for i, s in enumerate(splits) if s == "train"]
    assert set(held.values()) == {1}


def test_fold_tasks_partition_train_items() -> None:
    rng = np.random.default_rng(7)
    ids = IDS[:61]
    items = [PairItem(i, "toy", Path(f"{i}.png"), (f"text {j % 17}",)) for j, i in enumerate(ids)]
    texts = [f"text {t}" for t in range(17)]
    pairs = [(j, j % 17) for j in range(len(ids))]
    raw = RawFeatures(
        items, texts, pairs, np.zeros((61, 1, 1)), np.zeros((17, 1, 1)), np.zeros((17, 1))
    )
    vec = rng.standard_normal((61, 8)).astype(np.float32)
    tv = rng.standard_normal((17, 8)).astype(np.float32)
    feats = SpaceFeatures(vec, [v[None] for v in vec], tv, [v[None] for v in tv])
    k = 3
    seen: list[int] = []
    for f in range(k):
        t2i, i2t = build_tasks("toy", raw, feats, "train", partial(_in_fold, k=k, fold=f))
        rows = [j for j, i in enumerate(ids) if split_of(i) == "train" and fold_of(i, k) == f]
        assert len(t2i.g_vecs) == len(rows) and np.array_equal(t2i.g_vecs, vec[rows])
        assert len(i2t.q_vecs) == len(rows)
        seen += rows
    assert sorted(seen) == [j for j, i in enumerate(ids) if split_of(i) == "train"]


class _Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(11, 7)


class _Tower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = _Head()


class _Visual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tower = _Tower()
        self.bridge_proj = nn.Linear(5, 7, bias=False)
        self.bridge_gate = nn.Parameter(torch.ones(()))


class _Text(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(5, 7, bias=False)


class _Starterish(nn.Module):
    """The state-dict names of the starter model's heads, at toy sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = _Visual()
        self.text = _Text()
        self.logit_scale = nn.Parameter(torch.tensor(2.0))


def test_heads_loaded_swaps_and_restores() -> None:
    torch.manual_seed(0)
    model = _Starterish()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(11)
    heads = {
        "media_weight": rng.standard_normal((7, 11)),
        "media_bias": rng.standard_normal(7),
        "text_weight": rng.standard_normal((7, 5)),
        "bridge_gate": np.array(0.3),
        "logit_scale": np.array(4.0),
    }
    with heads_loaded(model, heads) as m:
        assert np.allclose(m.visual.tower.head.proj.weight.detach().numpy(), heads["media_weight"])
        assert np.allclose(m.visual.bridge_proj.weight.detach().numpy(), heads["text_weight"])
        assert np.allclose(m.text.proj.weight.detach().numpy(), heads["text_weight"])
        assert float(m.visual.bridge_gate.detach()) == pytest.approx(0.3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
