"""Stage-1 training pieces: batches of queries, the list-wise loss, summaries over tasks."""

from __future__ import annotations

from typing import Any

import numpy as np

from indexer.train_reranker.tasks import PaddedTask
from retrieval.rerank.model import MODALITY_IDS, CrossReranker


def batches(
    tasks: list[PaddedTask], size: int, rng: np.random.Generator
) -> list[tuple[int, np.ndarray]]:
    """Shuffled (task index, query rows) batches; one task per batch (same candidate width)."""
    out = []
    for ti, pt in enumerate(tasks):
        perm = rng.permutation(len(pt.task.relevant))
        out += [(ti, perm[s : s + size]) for s in range(0, len(perm), size)]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def step_loss(
    model: CrossReranker,
    pt: PaddedTask,
    rows: np.ndarray,
    train_depth: int,
    in_batch: int,
    scale: float,
    noise: float,
    rng: np.random.Generator,
) -> Any:
    import torch

    rel = pt.task.relevant
    c = min(train_depth, pt.order.shape[1])
    cands = pt.order[rows, :c].copy()  # (B, c) hard negatives (and positives) of the first stage
    for b, r in enumerate(rows):
        if not any(g in rel[r] for g in cands[b]):
            cands[b, -1] = rng.choice(sorted(rel[r]))
    if in_batch and len(rows) > 1 and pt.order.shape[1] > c:
        firsts = np.array([min(rel[r]) for r in rows])
        extra = np.stack(
            [np.roll(firsts, -(j + 1)) for j in range(min(in_batch, len(rows) - 1))], axis=1
        )
        cands = np.concatenate([cands, extra], axis=1)  # (B, c + m) other queries' positives
    b, n = cands.shape
    target = torch.tensor([[g in rel[r] for g in cands[i]] for i, r in enumerate(rows)])  # (B, n)
    q_idx = np.repeat(rows, n)
    g_idx = cands.reshape(-1)
    q_x, g_x = torch.from_numpy(pt.q_x[q_idx]), torch.from_numpy(pt.g_x[g_idx])
    q_keep, g_keep = torch.from_numpy(pt.q_keep[q_idx]), torch.from_numpy(pt.g_keep[g_idx])
    if noise:  # train items sit closer to their pairs than unseen ones (the heads saw them)
        q_x = q_x + noise * torch.randn_like(q_x) * q_keep[..., None]
        g_x = g_x + noise * torch.randn_like(g_x) * g_keep[..., None]
    match = model(
        q_x,
        q_keep,
        torch.full((b * n,), MODALITY_IDS[pt.task.q_mod], dtype=torch.long),
        g_x,
        g_keep,
        torch.full((b * n,), MODALITY_IDS[pt.task.g_mod], dtype=torch.long),
    ).view(b, n)
    cos = torch.from_numpy(np.take_along_axis(pt.cos[rows], cands, axis=1)).float()
    logits = scale * cos + match  # (B, n)
    pos = logits.masked_fill(~target, float("-inf")).logsumexp(dim=1)
    return (logits.logsumexp(dim=1) - pos).mean()


def first_stage_summary(pts: list[PaddedTask]) -> dict[str, float]:
    """Mean first-stage R@1 / R@10 and positive cosine over tasks: how hard the training data is."""
    r1, r10, pos = [], [], []
    for pt in pts:
        rel = pt.task.relevant
        r1.append(np.mean([pt.order[q, 0] in rel[q] for q in range(len(rel))]))
        r10.append(
            np.mean([bool(rel[q] & set(pt.order[q, :10].tolist())) for q in range(len(rel))])
        )
        pos.append(np.mean([pt.cos[q, list(rel[q])].mean() for q in range(len(rel))]))
    return {"R@1": float(np.mean(r1)), "R@10": float(np.mean(r10)), "pos_cos": float(np.mean(pos))}


def summary(result: dict[str, dict[str, dict[str, float]]], key: str) -> dict[str, float]:
    """Mean R@1 / R@10 / mAP@10 over tasks (each task weighs the same)."""
    return {
        m: float(np.mean([r[key][m] for r in result.values()])) for m in ("R@1", "R@10", "mAP@10")
    }
