"""The end of `crossmedia train-reranker`: stage 2, the validation record, artifact and cards."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from indexer.train_reranker.hubness import fit_hub_stage
from indexer.train_reranker.job import Job
from indexer.train_reranker.tasks import evaluate, match_fn
from retrieval.rerank.model import CrossReranker


def finish(job: Job, model: CrossReranker, alpha: float, card: dict[str, Any]) -> dict[str, Any]:
    """Fit stage 2 behind the finished stage 1, measure both on val, write artifact + cards."""
    from retrieval.rerank.reranker import CrossAttentionReranker

    cfg, out = job.cfg, Path(job.cfg.out)
    model.eval()
    reranker = CrossAttentionReranker(model, job.encoder.space.key(), alpha, out.stem)
    tasks = job.tasks(("train", "val") if cfg.hub_folds else ("val",), model.cfg.max_tokens)
    if cfg.hub_folds:
        card["hub"] = fit_hub_stage(
            reranker,
            job.encoder.towers,
            job.features,
            job.checkpoints,
            job.manifests,
            cfg.depth,
            tasks,
            cfg.hub_folds,
            cfg.progress,
            job.head,
        )
    card["val"] = evaluate(tasks["val"], match_fn(model), cfg.depth, [alpha], bank=reranker.bank)
    card["version"] = out.stem
    card["command"] = cfg.command()
    card["seconds_total"] = round(time.time() - job.t_start, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    reranker.save(
        out,
        {
            "depth": str(cfg.depth),
            "selected_epoch": str(card["selection"]["epoch"]),
            "train_data": ",".join(cfg.sets),
        },
    )
    out.with_suffix(".json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(card_markdown(card))
    return card


def card_markdown(card: dict[str, Any]) -> str:
    sel = card["selection"]
    hub = card.get("hub")
    lines = [
        f"# {card['version']}: re-ranker for the starter space",
        "",
        f"- space: `{card['space']}` (refused for any other)",
        f"- command: `{card['command']}`",
        f"- data: {', '.join(f'`{v}`' for v in card['data'].values())}",
        f"- split: {card['split']}",
        f"- model: {card['config']}",
        f"- training: {card['training']}",
    ]
    if "stage1_from" in card:
        lines.append(
            f"- stage 1 taken as it is from `{card['stage1_from']}` (training record above is its own)"
        )
    lines.append(
        f"- stage 1: score = cosine + alpha x match, alpha = {sel['alpha']:.5f} "
        f"({sel['alpha_x_scale']:g} / logit_scale), chosen with epoch {sel['epoch']} by mean "
        f"validation R@1 gain at depth {sel['depth']} ({sel['val_mean_R@1_gain']:+.4f})"
    )
    if hub:
        lines.append(
            f"- stage 2: the top {hub['window']} reordered by score - beta x hub, hub = mean of the "
            f"{hub['k']} largest cosines to a bank of train-split query vectors ({hub['bank_rows']}); "
            f"k = {hub['k']}, beta = {hub['beta']:g} chosen on {hub['selected_on']} "
            f"({hub['oof_folds']} folds), mean R@1 gain there {hub['selection_mean_R@1_gain']:+.4f}"
        )
        key = f"k={hub['k']},beta={hub['beta']:g}"
        lines += [
            "",
            f"## Stage 2 selection data, at the chosen {key}",
            "",
            "| task (folds + val pooled) | queries | R@1 stage 1 | R@1 both stages | R@10 |",
            "|---|---:|---:|---:|---:|",
        ]
        for task, r in hub["grid"][key].items():
            lines.append(
                f"| {task} | {r['queries']} | {r['R@1 stage 1']:.3f} | {r['R@1']:.3f} | {r['R@10']:.3f} |"
            )
    lines += [
        "",
        "## Validation (depth {})".format(sel["depth"]),
        "",
        "| task | first R@1 | stage 1 R@1 | re-ranked R@1 | first R@10 | re-ranked R@10 | queries | gallery |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, res in card["val"].items():
        f = res["first_stage"]
        final = next(v for k, v in res.items() if k != "first_stage" and not k.endswith("stage 1"))
        s1 = next((v for k, v in res.items() if k.endswith("stage 1")), final)
        lines.append(
            f"| {task} | {f['R@1']:.3f} | {s1['R@1']:.3f} | {final['R@1']:.3f} | {f['R@10']:.3f} | "
            f"{final['R@10']:.3f} | {f['queries']} | {f['gallery']} |"
        )
    return "\n".join(lines) + "\n"
