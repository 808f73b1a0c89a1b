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

    python -m indexer.rerank_train --data ../shared/data     # writes the artifact + card

`--oof-folds K` (indexer.rerank_oof): the train items' features instead come from K copies of
the heads, each trained without one fold of the train items, and each item is ranked against its
own fold by the heads that never saw it; that makes train as hard as val (first-stage R@1 0.57,
positive cosine 0.43 over the OOF tasks), but did not give a validation gain either (RESULTS.md,
"Re-ranker ablation"), so the shipped v1 does not use it.

    python -m indexer.rerank_train --data ../shared/data --oof-folds 4 --token-noise 0 \
        --out .cache/oof/a.safetensors

Selection on the VALIDATION splits only: after every epoch, each alpha of `alphas` (final score
= cosine + alpha x match) is scored by the mean R@1 gain over the validation tasks at the serving
depth; the best (epoch, alpha) whose mean R@10 is not below the first stage's wins. The test
splits are never read here.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from indexer.rerank_data import PaddedTask, build_tasks, evaluate, match_fn
from indexer.rerank_features import DEFAULT_CACHE, project, raw_features, towers_tag
from indexer.rerank_oof import fold_heads, fold_of, heads_loaded
from retrieval.rerank import STARTER_RERANKER, WEIGHTS_DIR
from retrieval.rerank.model import MODALITY_IDS, CrossReranker, RerankerConfig
from retrieval.splits import split_of

DEFAULT_SETS = ("coco_mini", "tuxpaint", "cifar10")
ALPHA_STEPS = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)  # x 1/logit_scale


def load_split_tasks(encoder: Any, data_root: Path, sets: tuple[str, ...], splits: tuple[str, ...],
                     max_tokens: int, cache_dir: Path = DEFAULT_CACHE, progress: bool = True,
                     oof_heads: list[dict[str, np.ndarray]] | None = None
                     ) -> dict[str, list[PaddedTask]]:
    """{split: [PaddedTask]} for every data set, through the encoder's towers (cached) and heads.

    With `oof_heads` (K fold heads, see indexer.rerank_oof), "train" is instead K tasks per data
    set and direction: fold f's train items through heads f (which never saw them), fold f's
    items as the gallery. Other splits always go through the encoder's own (shipped) heads.
    """
    out: dict[str, list[PaddedTask]] = {s: [] for s in splits}
    for name in sets:
        manifest = Path(data_root) / name / "items.jsonl"
        raw = raw_features(manifest, encoder.model, encoder.preprocess, encoder.tokenizer,
                           towers_tag(), cache_dir, progress)
        feats = project(raw, encoder.model)
        for split in splits:
            if split == "train" and oof_heads:
                out[split].extend(oof_tasks(encoder, name, raw, oof_heads, max_tokens))
            else:
                out[split].extend(PaddedTask(t, max_tokens) for t in build_tasks(name, raw, feats, split))
    return out


def oof_tasks(encoder: Any, name: str, raw: Any, heads: list[dict[str, np.ndarray]], max_tokens: int
              ) -> list[PaddedTask]:
    out = []
    for f, h in enumerate(heads):
        with heads_loaded(encoder.model, h):
            feats = project(raw, encoder.model)
        member = partial(_in_fold, k=len(heads), fold=f)
        out.extend(PaddedTask(t, max_tokens) for t in build_tasks(name, raw, feats, "train", member))
    return out


def _in_fold(item_id: str, k: int, fold: int) -> bool:
    return split_of(item_id) == "train" and fold_of(item_id, k) == fold


def run_train_reranker(
    data_root: Path = Path("../shared/data"),
    out: Path = WEIGHTS_DIR / f"{STARTER_RERANKER}.safetensors",
    *,
    sets: tuple[str, ...] = DEFAULT_SETS,
    epochs: int = 3,
    train_depth: int = 16,
    in_batch: int = 4,
    depth: int = 50,
    batch_queries: int = 32,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    cos_offset: float = 0.0,
    token_noise: float = 0.0625,
    oof_folds: int = 0,
    hub_folds: int = 4,
    stage1_from: Path | None = None,
    config: RerankerConfig | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    progress: bool = True,
    encoder: Any = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Train, select on validation, write `out` (+ `out`.md card); returns the card's data.

    Stage 1 (the cross-attention model and alpha) is trained here, or with `stage1_from` taken
    as it is from an earlier artifact (its card's training record is carried over); stage 2 (the
    query bank, see indexer.rerank_hub) is then fitted with `hub_folds` fold heads (0: none).
    """
    import torch

    from retrieval.encoders import create_encoder
    from retrieval.rerank.reranker import load_reranker

    t_start = time.time()
    encoder = encoder if encoder is not None else create_encoder("starter", device="cpu")
    if stage1_from is not None:
        base = load_reranker(Path(stage1_from), encoder.space.key())
        card = json.loads(Path(stage1_from).with_suffix(".json").read_text())
        card["stage1_from"] = str(stage1_from)
        return _finish(base.model, base.alpha, card, encoder, data_root, out, sets, depth, hub_folds,
                       cache_dir, progress, t_start, command)
    cfg = config or RerankerConfig(use_global=False)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    oof_heads = None
    if oof_folds:
        oof_heads = fold_heads([Path(data_root) / n / "items.jsonl" for n in sets], oof_folds, seed=0,
                               progress=progress)
    tasks = load_split_tasks(encoder, data_root, sets, ("train", "val"), cfg.max_tokens, cache_dir, progress,
                             oof_heads)
    train_first = _first_stage_summary(tasks["train"])
    scale = float(encoder.model.logit_scale.exp())
    alphas = [a / scale for a in ALPHA_STEPS]

    model = CrossReranker(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    batches = _batches(tasks["train"], batch_queries, rng)
    total = epochs * len(batches)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"gain": 0.0, "epoch": 0, "alpha": 0.0, "state": None}
    base_val = _summary(evaluate(tasks["val"], match_fn(model.eval()), depth, [0.0]), "first_stage")
    bar = tqdm(total=total, desc="train-reranker", disable=not progress)
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for ti, rows in _batches(tasks["train"], batch_queries, rng):
            loss = _step_loss(model, tasks["train"][ti], rows, train_depth, in_batch, cos_offset * scale,
                              token_noise, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses[-20:]):.3f}")
        val = evaluate(tasks["val"], match_fn(model.eval()), depth, alphas)
        row: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses))}
        for a in alphas:
            s = _summary(val, f"alpha={a:g}")
            row[f"alpha={a * scale:g}/scale"] = s
            gain = s["R@1"] - base_val["R@1"]
            if gain > best["gain"] + 1e-9 and s["R@10"] >= base_val["R@10"] - 1e-9:
                best = {"gain": gain, "epoch": epoch, "alpha": a,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        history.append(row)
        bar.write(f"epoch {epoch}: loss {row['loss']:.4f}, val mean R@1 first stage "
                  f"{base_val['R@1']:.4f}, best so far +{best['gain']:.4f} "
                  f"(epoch {best['epoch']}, alpha x scale {best['alpha'] * scale:g})")
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    card = {
        "version": out.stem,
        "space": encoder.space.key(),
        "data": {name: str(Path(data_root) / name / "items.jsonl") for name in sets},
        "split": ("trained on train, selected on val (retrieval.splits); test never read"
                  + (f"; train features out-of-fold from {oof_folds} fold heads (indexer.rerank_oof)"
                     if oof_folds else "")),
        "train_first_stage": train_first,
        "config": asdict(cfg),
        "training": {"epochs": epochs, "train_depth": train_depth, "in_batch": in_batch,
                     "batch_queries": batch_queries, "lr": lr, "weight_decay": weight_decay,
                     "seed": seed, "logit_scale": scale, "cos_offset": cos_offset,
                     "token_noise": token_noise, "oof_folds": oof_folds, "seconds": round(time.time() - t_start, 1)},
        "selection": {"depth": depth, "alpha": best["alpha"], "alpha_x_scale": best["alpha"] * scale,
                      "epoch": best["epoch"], "val_mean_R@1_gain": best["gain"],
                      "val_first_stage": base_val},
        "history": history,
    }
    return _finish(model, best["alpha"], card, encoder, data_root, out, sets, depth, hub_folds, cache_dir,
                   progress, t_start, command)


def _finish(model: CrossReranker, alpha: float, card: dict[str, Any], encoder: Any, data_root: Path,
            out: Path, sets: tuple[str, ...], depth: int, hub_folds: int, cache_dir: Path,
            progress: bool, t_start: float, command: str | None) -> dict[str, Any]:
    """Fit stage 2 behind the finished stage 1, measure both on val, write artifact + card."""
    from indexer.rerank_hub import fit_hub_stage
    from retrieval.rerank.reranker import CrossAttentionReranker

    model.eval()
    reranker = CrossAttentionReranker(model, encoder.space.key(), alpha, out.stem)
    tasks = load_split_tasks(encoder, data_root, sets, ("train", "val") if hub_folds else ("val",),
                             model.cfg.max_tokens, cache_dir, progress)
    if hub_folds:
        card["hub"] = fit_hub_stage(reranker, encoder, data_root, sets, depth, tasks, hub_folds, cache_dir,
                                    progress)
    card["val"] = evaluate(tasks["val"], match_fn(model), depth, [alpha], bank=reranker.bank)
    card["version"] = out.stem
    card["command"] = command or " ".join(shlex.quote(a) for a in sys.argv)
    card["seconds_total"] = round(time.time() - t_start, 1)
    reranker.save(Path(out), {"depth": str(depth), "selected_epoch": str(card["selection"]["epoch"]),
                              "train_data": ",".join(sets)})
    Path(out).with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    Path(out).with_suffix(".md").write_text(_card_markdown(card))
    return card


def _batches(tasks: list[PaddedTask], size: int, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Shuffled (task index, query rows) batches; one task per batch (same candidate width)."""
    out = []
    for ti, pt in enumerate(tasks):
        perm = rng.permutation(len(pt.task.relevant))
        out += [(ti, perm[s : s + size]) for s in range(0, len(perm), size)]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _step_loss(model: CrossReranker, pt: PaddedTask, rows: np.ndarray, train_depth: int,
               in_batch: int, scale: float, noise: float, rng: np.random.Generator) -> Any:
    import torch

    rel = pt.task.relevant
    c = min(train_depth, pt.order.shape[1])
    cands = pt.order[rows, :c].copy()  # (B, c) hard negatives (and positives) of the first stage
    for b, r in enumerate(rows):
        if not any(g in rel[r] for g in cands[b]):
            cands[b, -1] = rng.choice(sorted(rel[r]))
    if in_batch and len(rows) > 1 and pt.order.shape[1] > c:
        firsts = np.array([min(rel[r]) for r in rows])
        extra = np.stack([np.roll(firsts, -(j + 1)) for j in range(min(in_batch, len(rows) - 1))], axis=1)
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
        q_x, q_keep, torch.full((b * n,), MODALITY_IDS[pt.task.q_mod], dtype=torch.long),
        g_x, g_keep, torch.full((b * n,), MODALITY_IDS[pt.task.g_mod], dtype=torch.long),
    ).view(b, n)
    cos = torch.from_numpy(np.take_along_axis(pt.cos[rows], cands, axis=1)).float()
    logits = scale * cos + match  # (B, n)
    pos = logits.masked_fill(~target, float("-inf")).logsumexp(dim=1)
    return (logits.logsumexp(dim=1) - pos).mean()


def _first_stage_summary(pts: list[PaddedTask]) -> dict[str, float]:
    """Mean first-stage R@1 / R@10 and positive cosine over tasks: how hard the training data is."""
    r1, r10, pos = [], [], []
    for pt in pts:
        rel = pt.task.relevant
        r1.append(np.mean([pt.order[q, 0] in rel[q] for q in range(len(rel))]))
        r10.append(np.mean([bool(rel[q] & set(pt.order[q, :10].tolist())) for q in range(len(rel))]))
        pos.append(np.mean([pt.cos[q, list(rel[q])].mean() for q in range(len(rel))]))
    return {"R@1": float(np.mean(r1)), "R@10": float(np.mean(r10)), "pos_cos": float(np.mean(pos))}


def _summary(result: dict[str, dict[str, dict[str, float]]], key: str) -> dict[str, float]:
    """Mean R@1 / R@10 / mAP@10 over tasks (each task weighs the same)."""
    return {m: float(np.mean([r[key][m] for r in result.values()])) for m in ("R@1", "R@10", "mAP@10")}


def _card_markdown(card: dict[str, Any]) -> str:
    sel = card["selection"]
    hub = card.get("hub")
    lines = [
        f"# {card['version']}: re-ranker for the starter space", "",
        f"- space: `{card['space']}` (refused for any other)",
        f"- command: `{card['command']}`",
        f"- data: {', '.join(f'`{v}`' for v in card['data'].values())}",
        f"- split: {card['split']}",
        f"- model: {card['config']}",
        f"- training: {card['training']}",
    ]
    if "stage1_from" in card:
        lines.append(f"- stage 1 taken as it is from `{card['stage1_from']}` (training record above is its own)")
    lines.append(
        f"- stage 1: score = cosine + alpha x match, alpha = {sel['alpha']:.5f} "
        f"({sel['alpha_x_scale']:g} / logit_scale), chosen with epoch {sel['epoch']} by mean "
        f"validation R@1 gain at depth {sel['depth']} ({sel['val_mean_R@1_gain']:+.4f})")
    if hub:
        lines.append(
            f"- stage 2: the top {hub['window']} reordered by score - beta x hub, hub = mean of the "
            f"{hub['k']} largest cosines to a bank of train-split query vectors ({hub['bank_rows']}); "
            f"k = {hub['k']}, beta = {hub['beta']:g} chosen on {hub['selected_on']} "
            f"({hub['oof_folds']} folds), mean R@1 gain there {hub['selection_mean_R@1_gain']:+.4f}")
        key = f"k={hub['k']},beta={hub['beta']:g}"
        lines += ["", f"## Stage 2 selection data, at the chosen {key}", "",
                  "| task (folds + val pooled) | queries | R@1 stage 1 | R@1 both stages | R@10 |",
                  "|---|---:|---:|---:|---:|"]
        for task, r in hub["grid"][key].items():
            lines.append(f"| {task} | {r['queries']} | {r['R@1 stage 1']:.3f} | {r['R@1']:.3f} | {r['R@10']:.3f} |")
    lines += ["", "## Validation (depth {})".format(sel["depth"]), "",
              "| task | first R@1 | stage 1 R@1 | re-ranked R@1 | first R@10 | re-ranked R@10 | queries | gallery |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for task, res in card["val"].items():
        f = res["first_stage"]
        final = next(v for k, v in res.items() if k != "first_stage" and not k.endswith("stage 1"))
        s1 = next((v for k, v in res.items() if k.endswith("stage 1")), final)
        lines.append(f"| {task} | {f['R@1']:.3f} | {s1['R@1']:.3f} | {final['R@1']:.3f} | {f['R@10']:.3f} | "
                     f"{final['R@10']:.3f} | {f['queries']} | {f['gallery']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="Train the starter space's re-ranker (see module doc).")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / f"{STARTER_RERANKER}.safetensors")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oof-folds", type=int, default=0,
                   help="K > 1: train on out-of-fold first-stage features from K fold heads")
    p.add_argument("--token-noise", type=float, default=0.0625)
    p.add_argument("--cos-offset", type=float, default=0.0)
    p.add_argument("--hub-folds", type=int, default=4,
                   help="fold heads for choosing the query-bank stage's k and beta (0: no bank stage)")
    p.add_argument("--stage1-from", type=Path, default=None,
                   help="take the cross-attention model and alpha from this artifact instead of training")
    p.add_argument("--use-global", action="store_true",
                   help="let the model read the items' vectors (token row 0) besides local tokens")
    a = p.parse_args()
    command = "python -m indexer.rerank_train " + " ".join(shlex.quote(x) for x in sys.argv[1:])
    card = run_train_reranker(a.data, a.out, epochs=a.epochs, seed=a.seed, cos_offset=a.cos_offset,
                              token_noise=a.token_noise, oof_folds=a.oof_folds, hub_folds=a.hub_folds,
                              stage1_from=a.stage1_from, command=command.strip(),
                              config=RerankerConfig(use_global=a.use_global))
    print(json.dumps({"stage 1": card["selection"],
                      "stage 2": {k: v for k, v in card.get("hub", {}).items() if k != "grid"}}, indent=2))


if __name__ == "__main__":
    main()
