"""`crossmedia train-reranker`: train the cross-attention re-ranker of the starter space.

Data: the TRAIN splits (retrieval.splits) of ../shared/data coco_mini and tuxpaint (captions) and
cifar10 (class prompts), both directions (text -> image, image -> text). Each training query sees
the first stage's top `train_depth` gallery items of its split (hard negatives mined by the dual
encoder; a positive is swapped in when none made it) plus `in_batch` candidates taken from the
other queries of its batch (their positives: in-batch negatives). Loss: multi-positive softmax
cross-entropy over the list, with logits = cos_offset x logit_scale x cosine + match.
cos_offset defaults to 0 (the match alone must separate positives from hard negatives): the
heads were trained on the same train split, so there the first stage is over-confident and a
model trained as its correction learns to trust it (val R@1 gain 0 in our runs with offset 1).
How far: first-stage R@1 on train is 0.89-1.00 (positive cosine ~0.68), on val 0.39-0.70
(positive cosine ~0.35). Two defaults follow from that: the shipped model reads only the local
tokens (RerankerConfig(use_global=False)), and `token_noise` (Gaussian, per dimension, train only;
0.0625 = 1/sqrt(256) halves a cosine) makes train pairs look as loosely aligned as unseen ones.

    crossmedia train-reranker --out starter-reranker-v3.safetensors   # artifact + cards

`--oof-folds K` (indexer.train_reranker.oof): the train items' features instead come from K copies of
the heads, each trained without one fold of the train items, and each item is ranked against its
own fold by the heads that never saw it; that makes train as hard as val (first-stage R@1 0.57,
positive cosine 0.43 over the OOF tasks), but did not give a validation gain either (RESULTS.md,
"Re-ranker ablation"), so the shipped v1 does not use it.

    crossmedia train-reranker --oof-folds 4 --token-noise 0 --out oof-a.safetensors

Selection on the VALIDATION splits only: after every epoch, each alpha of `alphas` (final score
= cosine + alpha x match) is scored by the mean R@1 gain over the validation tasks at the serving
depth; the best (epoch, alpha) whose mean R@10 is not below the first stage's wins. The test
splits are never read here.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from indexer.train_reranker.card import finish
from indexer.train_reranker.config import TrainRerankerConfig
from indexer.train_reranker.job import Job
from indexer.train_reranker.loss import batches, first_stage_summary, step_loss, summary
from indexer.train_reranker.oof import fold_heads, shipped_head_config
from indexer.train_reranker.tasks import PaddedTask, evaluate, match_fn
from indexer.training.features import FeatureCache
from indexer.training.optim import optimiser_step
from indexer.training.paths import cache_dir, data_root
from retrieval.rerank.model import CrossReranker

ALPHA_STEPS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)  # x 1/logit_scale


def run_train_reranker(cfg: TrainRerankerConfig) -> dict[str, Any]:
    """Train, select on validation, write `cfg.out` (+ .json and .md cards); returns the card.

    Stage 1 (the cross-attention model and alpha) is trained here, or with `stage1_from` taken
    as it is from an earlier artifact (its card's training record is carried over); stage 2 (the
    query bank, see indexer.train_reranker.hubness) is then fitted with `hub_folds` fold heads.
    """
    from retrieval.encoders import create_encoder
    from retrieval.rerank.reranker import load_reranker

    t_start = time.time()
    root = data_root(cfg.data_root)
    encoder = create_encoder(cfg.encoder, device="cpu")
    job = Job(
        cfg,
        encoder,
        FeatureCache(cache_dir("features", cfg.cache_dir), progress=cfg.progress),
        cache_dir("checkpoints", cfg.cache_dir),
        cfg.manifests(root),
        t_start,
        shipped_head_config(cfg.encoder),
    )
    if cfg.stage1_from is not None:
        base = load_reranker(Path(cfg.stage1_from), encoder.space.key())
        card = json.loads(Path(cfg.stage1_from).with_suffix(".json").read_text())
        card["stage1_from"] = str(cfg.stage1_from)
        return finish(job, base.model, base.alpha, card)
    model, alpha, card = train_stage1(job)
    return finish(job, model, alpha, card)


def train_stage1(job: Job) -> tuple[CrossReranker, float, dict[str, Any]]:
    """The cross-attention model and alpha, chosen on validation; returns them and the card."""
    import torch

    cfg = job.cfg
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    oof_heads = None
    if cfg.oof_folds:
        oof_heads = fold_heads(
            list(job.manifests.values()),
            job.features,
            job.checkpoints,
            cfg.oof_folds,
            seed=0,
            progress=cfg.progress,
            head=job.head,
        )
    tasks = job.tasks(("train", "val"), cfg.model.max_tokens, oof_heads)
    scale = float(job.encoder.model.logit_scale.exp())
    model = CrossReranker(cfg.model)
    best, history, base_val = _fit(cfg, model, tasks, scale, rng)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    card = _stage1_card(job, tasks, scale, best, history, base_val)
    return model, best["alpha"], card


def _stage1_card(
    job: Job,
    tasks: dict[str, list[PaddedTask]],
    scale: float,
    best: dict[str, Any],
    history: list[dict[str, Any]],
    base_val: dict[str, float],
) -> dict[str, Any]:
    cfg = job.cfg
    return {
        "version": Path(cfg.out).stem,
        "space": job.encoder.space.key(),
        "data": {name: str(path) for name, path in job.manifests.items()},
        "split": (
            "trained on train, selected on val (retrieval.splits); test never read"
            + (
                f"; train features out-of-fold from {cfg.oof_folds} fold heads "
                "(indexer.train_reranker.oof)"
                if cfg.oof_folds
                else ""
            )
        ),
        "train_first_stage": first_stage_summary(tasks["train"]),
        "config": asdict(cfg.model),
        "training": {
            "epochs": cfg.epochs,
            "train_depth": cfg.train_depth,
            "in_batch": cfg.in_batch,
            "batch_queries": cfg.batch_queries,
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "seed": cfg.seed,
            "logit_scale": scale,
            "cos_offset": cfg.cos_offset,
            "token_noise": cfg.token_noise,
            "oof_folds": cfg.oof_folds,
            "seconds": round(time.time() - job.t_start, 1),
        },
        "selection": {
            "depth": cfg.depth,
            "alpha": best["alpha"],
            "alpha_x_scale": best["alpha"] * scale,
            "epoch": best["epoch"],
            "val_mean_R@1_gain": best["gain"],
            "val_first_stage": base_val,
        },
        "history": history,
    }


def _fit(
    cfg: TrainRerankerConfig,
    model: CrossReranker,
    tasks: dict[str, list[PaddedTask]],
    scale: float,
    rng: np.random.Generator,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict]:
    """Epochs of list-wise training; after each, every alpha is scored on val. Returns the best
    (epoch, alpha, weights) whose mean R@10 is not below the first stage's, the history, and
    the first stage's val summary."""
    import torch

    alphas = [a / scale for a in ALPHA_STEPS]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(batches(tasks["train"], cfg.batch_queries, rng))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
    )
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"gain": 0.0, "epoch": 0, "alpha": 0.0, "state": None}
    base_val = summary(
        evaluate(tasks["val"], match_fn(model.eval()), cfg.depth, [0.0]), "first_stage"
    )
    bar = tqdm(total=total, desc="train-reranker", disable=not cfg.progress)
    for epoch in range(1, cfg.epochs + 1):
        losses = _train_epoch(cfg, model, opt, sched, tasks["train"], scale, rng, bar, epoch)
        val = evaluate(tasks["val"], match_fn(model.eval()), cfg.depth, alphas)
        row: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses))}
        best = _select(val, alphas, scale, base_val, best, epoch, model, row)
        history.append(row)
        bar.write(
            f"epoch {epoch}: loss {row['loss']:.4f}, val mean R@1 first stage "
            f"{base_val['R@1']:.4f}, best so far +{best['gain']:.4f} "
            f"(epoch {best['epoch']}, alpha x scale {best['alpha'] * scale:g})"
        )
    bar.close()
    return best, history, base_val


def _train_epoch(
    cfg: TrainRerankerConfig,
    model: CrossReranker,
    opt: Any,
    sched: Any,
    train: list[PaddedTask],
    scale: float,
    rng: np.random.Generator,
    bar: Any,
    epoch: int,
) -> list[float]:
    model.train()
    losses = []
    for ti, rows in batches(train, cfg.batch_queries, rng):
        loss = step_loss(
            model,
            train[ti],
            rows,
            cfg.train_depth,
            cfg.in_batch,
            cfg.cos_offset * scale,
            cfg.token_noise,
            rng,
        )
        optimiser_step(opt, loss, sched, clip_norm=1.0)
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-20:]):.3f}")
    return losses


def _select(
    val: dict,
    alphas: list[float],
    scale: float,
    base_val: dict[str, float],
    best: dict[str, Any],
    epoch: int,
    model: CrossReranker,
    row: dict[str, Any],
) -> dict[str, Any]:
    """Score every alpha of this epoch into `row`; the new best when one beats `best`."""
    for a in alphas:
        s = summary(val, f"alpha={a:g}")
        row[f"alpha={a * scale:g}/scale"] = s
        gain = s["R@1"] - base_val["R@1"]
        if gain > best["gain"] + 1e-9 and s["R@10"] >= base_val["R@10"] - 1e-9:
            best = {
                "gain": gain,
                "epoch": epoch,
                "alpha": a,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
    return best
