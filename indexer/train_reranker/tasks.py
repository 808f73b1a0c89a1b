"""Retrieval tasks for training and measuring the re-ranker, on one split of one data set.

A task is one direction (text_to_image or image_to_text): query rows, gallery rows (vectors and
token sets in the shared space) and the relevant gallery rows of each query. Protocol, as in
`crossmedia bench recall`: a text is in a split when one of its items is; identical texts are one
row, relevant to every item carrying them; a labelled set's text is its class prompt.

`evaluate` runs the first stage (exact cosine over the gallery) and the re-ranker over its top
`depth`, and reports both side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.train_reranker.features import SpaceFeatures, project
from indexer.train_reranker.oof import fold_of, heads_loaded
from indexer.training.features import FeatureCache, ManifestFeatures
from retrieval.metrics import chance_recall, map_at_k, recall_at_k
from retrieval.rerank.bank import QueryBank
from retrieval.rerank.reranker import pad_tokens
from retrieval.splits import split_of

if TYPE_CHECKING:
    from retrieval.encoders.starter_towers import StarterTowers

KS = (1, 5, 10)


@dataclass
class Task:
    name: str  # "<data set>/<direction>"
    q_vecs: np.ndarray  # (Q, D)
    q_tokens: list[np.ndarray]
    q_mod: str
    g_vecs: np.ndarray  # (G, D)
    g_tokens: list[np.ndarray]
    g_mod: str
    relevant: list[set[int]]  # gallery rows per query

    def first_stage(self) -> np.ndarray:
        return self.q_vecs @ self.g_vecs.T  # (Q, G)


def build_tasks(
    dataset: str,
    raw: ManifestFeatures,
    feats: SpaceFeatures,
    split: str,
    member: Callable[[str], bool] | None = None,
) -> list[Task]:
    """Both directions on the items of `split`, or on the items whose id `member` accepts."""
    member = member or (lambda item_id: split_of(item_id) == split)
    img_rows = [i for i, it in enumerate(raw.items) if member(it.item_id)]
    img_pos = {r: j for j, r in enumerate(img_rows)}
    txt_of_img: dict[int, set[int]] = {}
    for i, t in raw.pairs:
        if i in img_pos:
            txt_of_img.setdefault(img_pos[i], set()).add(t)
    txt_rows = sorted({t for ts in txt_of_img.values() for t in ts})
    txt_pos = {r: j for j, r in enumerate(txt_rows)}
    i2t_rel = [{txt_pos[t] for t in txt_of_img.get(j, set())} for j in range(len(img_rows))]
    t2i_rel: list[set[int]] = [set() for _ in txt_rows]
    for j, ts in enumerate(i2t_rel):
        for t in ts:
            t2i_rel[t].add(j)
    iv, it = feats.image_vecs[img_rows], [feats.image_tokens[r] for r in img_rows]
    tv, tt = feats.text_vecs[txt_rows], [feats.text_tokens[r] for r in txt_rows]
    keep_i = [j for j, r in enumerate(i2t_rel) if r]
    return [
        Task(f"{dataset}/text_to_image", tv, tt, "text", iv, it, "image", t2i_rel),
        Task(
            f"{dataset}/image_to_text",
            iv[keep_i],
            [it[j] for j in keep_i],
            "image",
            tv,
            tt,
            "text",
            [i2t_rel[j] for j in keep_i],
        ),
    ]


class PaddedTask:
    """A task's token sets as padded float32 arrays, for batched forwards."""

    def __init__(self, task: Task, max_tokens: int) -> None:
        self.task = task
        self.q_x, self.q_keep = pad_tokens(task.q_tokens, max_tokens)
        self.g_x, self.g_keep = pad_tokens(task.g_tokens, max_tokens)
        self.cos = task.first_stage()
        self.order = np.argsort(-self.cos, axis=1, kind="stable")  # (Q, G) first-stage ranking


MatchFn = Callable[
    [PaddedTask, np.ndarray, np.ndarray], np.ndarray
]  # (task, q rows, cand (B, C)) -> (B, C)


def match_fn(model, batch: int = 2048) -> MatchFn:  # noqa: ANN001 - CrossReranker
    """Raw match logits for query rows x their candidate rows, with `model` (eval mode)."""
    import torch

    from retrieval.rerank.model import MODALITY_IDS

    def run(pt: PaddedTask, rows: np.ndarray, cands: np.ndarray) -> np.ndarray:
        b, c = cands.shape
        out = np.zeros(b * c, np.float32)
        q_idx = np.repeat(rows, c)
        g_idx = cands.reshape(-1)
        qm = MODALITY_IDS[pt.task.q_mod]
        gm = MODALITY_IDS[pt.task.g_mod]
        with torch.inference_mode():
            for s in range(0, b * c, batch):
                qi, gi = q_idx[s : s + batch], g_idx[s : s + batch]
                n = len(qi)
                out[s : s + n] = model(
                    torch.from_numpy(pt.q_x[qi]),
                    torch.from_numpy(pt.q_keep[qi]),
                    torch.full((n,), qm, dtype=torch.long),
                    torch.from_numpy(pt.g_x[gi]),
                    torch.from_numpy(pt.g_keep[gi]),
                    torch.full((n,), gm, dtype=torch.long),
                ).numpy()
        return out.reshape(b, c)

    return run


def rerank_scores(pt: PaddedTask, match: MatchFn, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate rows (Q, C), match logits (Q, C)) over each query's first-stage top `depth`."""
    cands = pt.order[:, : min(depth, pt.order.shape[1])]
    rows = np.arange(len(cands))
    return cands, match(pt, rows, cands)


def metrics(ranked: Sequence[Sequence[int]], task: Task) -> dict[str, float]:
    out: dict[str, float] = {f"R@{k}": recall_at_k(ranked, task.relevant, k) for k in KS}
    out["mAP@10"] = map_at_k(ranked, task.relevant, 10)
    g = len(task.g_vecs)
    out["queries"] = len(task.relevant)
    out["gallery"] = g
    out["chance_R@1"] = float(np.mean([chance_recall(g, len(r), 1) for r in task.relevant]))
    out["chance_R@10"] = float(np.mean([chance_recall(g, len(r), 10) for r in task.relevant]))
    return out


def reranked_lists(
    pt: PaddedTask,
    cands: np.ndarray,
    logits: np.ndarray,
    alpha: float,
    bank: QueryBank | None = None,
    k: int = max(KS),
) -> list[list[int]]:
    """Gallery rows per query after stage 1 (cosine + alpha * match) and, with `bank`, stage 2
    (the hubness correction of the top max(k, window)), exactly as the search service does."""
    cos = np.take_along_axis(pt.cos, cands, axis=1)
    final = cos + alpha * logits
    order = np.argsort(-final, axis=1, kind="stable")
    rows = np.take_along_axis(cands, order, axis=1)
    if bank is None or not bank.covers(pt.task.q_mod, pt.task.g_mod):
        return rows.tolist()
    hub = bank.hubness(pt.task.g_vecs, pt.task.q_mod)  # (G,) once per task
    scores = np.take_along_axis(final, order, axis=1)
    return [r[bank.correct(s, hub[r], k)].tolist() for r, s in zip(rows, scores, strict=True)]


def evaluate(
    pts: Sequence[PaddedTask],
    match: MatchFn,
    depth: int,
    alphas: Sequence[float],
    bank: QueryBank | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {"first_stage": metrics, "alpha=<a>": metrics, ...}} (one forward per task).

    With `bank`, "alpha=<a>" is both stages and "alpha=<a> stage 1" the cross-attention alone.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for pt in pts:
        cands, logits = rerank_scores(pt, match, depth)
        res = {"first_stage": metrics(pt.order[:, :10].tolist(), pt.task)}
        for a in alphas:
            res[f"alpha={a:g}"] = metrics(reranked_lists(pt, cands, logits, a, bank), pt.task)
            if bank is not None:
                res[f"alpha={a:g} stage 1"] = metrics(reranked_lists(pt, cands, logits, a), pt.task)
        out[pt.task.name] = res
    return out


def load_split_tasks(
    towers: StarterTowers,
    features: FeatureCache,
    manifests: dict[str, Path],
    splits: tuple[str, ...],
    max_tokens: int,
    oof_heads: list[dict[str, np.ndarray]] | None = None,
) -> dict[str, list[PaddedTask]]:
    """{split: [PaddedTask]} for every data set (`manifests`: name -> items.jsonl), from the
    shared feature cache through the heads loaded in `towers`.

    With `oof_heads` (K fold heads, see indexer.train_reranker.oof), "train" is instead K tasks
    per data set and direction: fold f's train items through heads f (which never saw them),
    fold f's items as the gallery. Other splits always go through the towers' own heads.
    """
    out: dict[str, list[PaddedTask]] = {s: [] for s in splits}
    for name, manifest in manifests.items():
        raw = features.load(manifest)
        feats = project(raw, towers)
        for split in splits:
            if split == "train" and oof_heads:
                out[split].extend(oof_tasks(towers, name, raw, oof_heads, max_tokens))
            else:
                out[split].extend(
                    PaddedTask(t, max_tokens) for t in build_tasks(name, raw, feats, split)
                )
    return out


def oof_tasks(
    towers: StarterTowers,
    name: str,
    raw: ManifestFeatures,
    heads: list[dict[str, np.ndarray]],
    max_tokens: int,
) -> list[PaddedTask]:
    out = []
    for f, h in enumerate(heads):
        with heads_loaded(towers.model, h):
            feats = project(raw, towers)
        member = partial(in_fold, k=len(heads), fold=f)
        out.extend(
            PaddedTask(t, max_tokens) for t in build_tasks(name, raw, feats, "train", member)
        )
    return out


def in_fold(item_id: str, k: int, fold: int) -> bool:
    return split_of(item_id) == "train" and fold_of(item_id, k) == fold
