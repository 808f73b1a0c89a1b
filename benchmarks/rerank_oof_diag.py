"""Does the out-of-fold re-ranker learn anything that transfers? Train it on OOF folds 0..K-2,
then measure its R@1 gain on the held-out fold K-1 (unseen items, in that fold's own heads'
space), on the validation split through the shipped heads (what production serves) and on the
validation split through fold K-1's heads (which never saw it either): a gain on the last but
not the second would point at the fold heads' space differing from the shipped one. Test is never
read.

    nice .venv/bin/python benchmarks/rerank_oof_diag.py [--folds 4] [--epochs 3]

Prints the mean R@1 gain (tasks weighted equally) per epoch and alpha x logit_scale.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch

    from indexer.rerank_data import evaluate, match_fn
    from indexer.rerank_oof import fold_heads, heads_loaded
    from indexer.rerank_train import ALPHA_STEPS, _batches, _step_loss, _summary, load_split_tasks
    from retrieval.encoders import create_encoder
    from retrieval.rerank.model import CrossReranker, RerankerConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    sets = ("coco_mini", "tuxpaint", "cifar10")
    enc = create_encoder("starter", device="cpu")
    heads = fold_heads([a.data / n / "items.jsonl" for n in sets], a.folds, progress=False)
    cfg = RerankerConfig(use_global=False)
    tasks = load_split_tasks(enc, a.data, sets, ("train", "val"), cfg.max_tokens, progress=False,
                             oof_heads=heads)
    with heads_loaded(enc.model, heads[-1]):
        val_fold = load_split_tasks(enc, a.data, sets, ("val",), cfg.max_tokens, progress=False)["val"]
    # oof_tasks order: per data set, per fold, (text_to_image, image_to_text)
    fold = [(j // 2) % a.folds for j in range(len(tasks["train"]))]
    fit = [pt for pt, f in zip(tasks["train"], fold, strict=True) if f != a.folds - 1]
    held = [pt for pt, f in zip(tasks["train"], fold, strict=True) if f == a.folds - 1]
    scale = float(enc.model.logit_scale.exp())
    alphas = [x / scale for x in ALPHA_STEPS]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = CrossReranker(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    total = a.epochs * len(_batches(fit, 32, rng))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    for epoch in range(1, a.epochs + 1):
        model.train()
        for ti, rows in _batches(fit, 32, rng):
            loss = _step_loss(model, fit[ti], rows, 16, 4, 0.0, 0.0, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        for name, pts in (("held-out fold", held), ("val (shipped heads)", tasks["val"]),
                          ("val (fold heads)", val_fold)):
            r = evaluate(pts, match_fn(model.eval()), 50, alphas)
            base = _summary(r, "first_stage")["R@1"]
            gains = {f"{x:g}": round(_summary(r, f"alpha={al:g}")["R@1"] - base, 4)
                     for x, al in zip(ALPHA_STEPS, alphas, strict=True)}
            print(f"epoch {epoch} {name}: first-stage R@1 {base:.4f}, gain by alpha x scale {gains}",
                  flush=True)


if __name__ == "__main__":
    main()
