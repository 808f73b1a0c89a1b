"""Stage 2 of the re-ranker (retrieval.rerank.bank): build the query bank, choose its k and beta.

The bank is every train-split query-side vector of the training sets (captions and class prompts
for text queries, photos for image queries) through the shipped heads. Those heads were fitted
on exactly these items, while the candidates a bank is compared with at serving time are unseen.
Selection reproduces that relation without touching test data:

- out-of-fold: the K fold heads of indexer.train_reranker.oof; for fold f, the candidates and queries are
  fold f's train items through heads f (which never saw them) and the bank is the other folds'
  items through the same heads (which were fitted on them), over all training sets, as served;
- validation: the val splits through the shipped heads against the shipped bank.

Every (k, beta) of the grid is scored by the R@1 gain over stage 1 alone, pooled per data set and
direction over the folds and val, then averaged over those tasks; R@10 cannot change (the
correction only reorders the top `window` = 10). The out-of-fold queries are about 5x the
validation ones, which alone cannot resolve a 0.02 effect.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from indexer.align.heads import HeadConfig
from indexer.train_reranker.features import project
from indexer.train_reranker.oof import fold_heads, fold_of, heads_loaded
from indexer.train_reranker.tasks import (
    PaddedTask,
    Task,
    build_tasks,
    match_fn,
    rerank_scores,
    reranked_lists,
)
from indexer.training.features import FeatureCache
from retrieval.rerank.bank import QueryBank
from retrieval.splits import split_of

if TYPE_CHECKING:
    from retrieval.encoders.starter_towers import StarterTowers

HUB_KS = (10, 25, 50)
HUB_BETAS = (0.25, 0.5, 0.75, 1.0)
WINDOW = 10
Scored = tuple[PaddedTask, dict[str, np.ndarray]]  # a task and the bank it is measured against


def bank_vectors(pts: Sequence[PaddedTask | Task]) -> dict[str, np.ndarray]:
    """The tasks' query vectors, per query modality: what a bank for such queries holds."""
    out: dict[str, list[np.ndarray]] = defaultdict(list)
    for pt in pts:
        task = pt.task if isinstance(pt, PaddedTask) else pt
        out[task.q_mod].append(task.q_vecs)
    return {m: np.concatenate(v).astype(np.float32) for m, v in out.items()}


def _train_fold(item_id: str, k: int, fold: int, inside: bool) -> bool:
    return split_of(item_id) == "train" and (fold_of(item_id, k) == fold) == inside


def oof_scored(
    towers: StarterTowers,
    features: FeatureCache,
    manifests: dict[str, Path],
    heads: list[dict[str, np.ndarray]],
    max_tokens: int,
) -> list[Scored]:
    """Per fold: fold f's tasks through heads f, with the bank of every set's other folds.

    Only fold f's own tasks are padded and ranked; of the other folds' tasks just the query
    vectors are kept (the bank): their (Q, G) first-stage matrices would be 3/4 of the train
    split per fold (flickr8k: over 1 GB each), which is what ran a 24 GiB machine out of memory."""
    k = len(heads)
    per_fold: list[tuple[list[PaddedTask], list[Task]]] = [([], []) for _ in heads]
    for name, manifest in manifests.items():
        raw = features.load(manifest)
        for f, h in enumerate(heads):
            with heads_loaded(towers.model, h):
                feats = project(raw, towers)
            own, others = per_fold[f]
            member = partial(_train_fold, k=k, fold=f, inside=True)
            own.extend(PaddedTask(t, max_tokens) for t in build_tasks(name, raw, feats, "", member))
            member = partial(_train_fold, k=k, fold=f, inside=False)
            others.extend(build_tasks(name, raw, feats, "", member))
    return [(pt, bank_vectors(others)) for tasks, others in per_fold for pt in tasks]


def select_hub(
    scored: Sequence[Scored],
    model: Any,
    alpha: float,
    depth: int,
    ks: Sequence[int] = HUB_KS,
    betas: Sequence[float] = HUB_BETAS,
    progress: bool = True,
) -> dict[str, Any]:
    """Grid-search (k, beta) on `scored` tasks behind stage 1 (`model`, `alpha`).

    Returns {"k", "beta", "gain", "grid": {"k=..,beta=..": {task: {"R@1", "R@1 stage 1", ...}}}}.
    """
    match = match_fn(model)
    stage1 = []  # per task: its bank, stage-1 candidates and logits, and stage 1's top-1 hits
    for pt, vecs in tqdm(scored, desc="stage-1 lists", disable=not progress):
        cands, logits = rerank_scores(pt, match, depth)
        base = reranked_lists(pt, cands, logits, alpha)
        hit = np.array([b[0] in r for b, r in zip(base, pt.task.relevant, strict=True)])
        stage1.append((pt, vecs, cands, logits, hit))
    grid: dict[str, dict[str, dict[str, float]]] = {}
    best: dict[str, Any] = {"k": HUB_KS[0], "beta": 0.0, "gain": 0.0}
    for k in ks:
        for beta in betas:
            hits: dict[str, list[list[np.ndarray]]] = defaultdict(lambda: [[], [], []])
            for pt, vecs, cands, logits, base_hit in stage1:
                hub = reranked_lists(pt, cands, logits, alpha, QueryBank(vecs, k, beta, WINDOW))
                rel = pt.task.relevant
                h = hits[pt.task.name]
                h[0].append(base_hit)
                h[1].append(np.array([x[0] in r for x, r in zip(hub, rel, strict=True)]))
                h[2].append(
                    np.array([bool(set(x[:10]) & r) for x, r in zip(hub, rel, strict=True)])
                )
            row = {
                name: {
                    "R@1 stage 1": float(np.concatenate(h[0]).mean()),
                    "R@1": float(np.concatenate(h[1]).mean()),
                    "R@10": float(np.concatenate(h[2]).mean()),
                    "queries": int(sum(len(x) for x in h[0])),
                }
                for name, h in sorted(hits.items())
            }
            gain = float(np.mean([r["R@1"] - r["R@1 stage 1"] for r in row.values()]))
            grid[f"k={k},beta={beta:g}"] = row
            if gain > best["gain"] + 1e-9:
                best = {"k": k, "beta": beta, "gain": gain}
    return {**best, "window": WINDOW, "grid": grid}


def fit_hub_stage(
    reranker: Any,
    towers: StarterTowers,
    features: FeatureCache,
    checkpoints: Path,
    manifests: dict[str, Path],
    depth: int,
    tasks: dict[str, list[PaddedTask]],
    oof_folds: int = 4,
    progress: bool = True,
    head: HeadConfig | None = None,
) -> dict[str, Any]:
    """Give `reranker` its bank and the (k, beta) chosen on out-of-fold + validation data; returns
    the card section. `tasks` are the "train" and "val" splits through the shipped heads (the
    bank is the train queries). Test splits are never read."""
    shipped = bank_vectors(tasks["train"])
    heads = fold_heads(
        list(manifests.values()),
        features,
        checkpoints,
        oof_folds,
        seed=0,
        progress=progress,
        head=head,
    )
    scored = oof_scored(towers, features, manifests, heads, reranker.cfg.max_tokens)
    scored += [(pt, shipped) for pt in tasks["val"]]
    sel = select_hub(scored, reranker.model, reranker.alpha, depth, progress=progress)
    reranker.bank = QueryBank(shipped, k=sel["k"], beta=sel["beta"], window=sel["window"])
    return {
        "k": sel["k"],
        "beta": sel["beta"],
        "window": sel["window"],
        "selection_mean_R@1_gain": sel["gain"],
        "oof_folds": oof_folds,
        "bank_rows": {m: int(len(v)) for m, v in shipped.items()},
        "selected_on": "out-of-fold train folds + val (pooled per data set and direction)",
        "grid": sel["grid"],
    }
