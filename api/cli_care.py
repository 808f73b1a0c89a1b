"""Catalogue care on the command line: `index --sync` (indexer/sync.py), `dedup`
(retrieval/dedup.py) and `eval` (retrieval/live_eval.py)."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_output import MAX_LISTED

SyncOpt = Annotated[
    bool,
    typer.Option(
        "--sync/--no-sync",
        envvar="CROSSMEDIA_SYNC",
        help="Also remove the items whose file or manifest entry is gone (never uploads or "
        "other sources' items). Scheduled runs can set CROSSMEDIA_SYNC=1.",
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="With --sync: list what it would remove and change nothing."),
]
MarkDupOpt = Annotated[
    bool,
    typer.Option(
        "--mark-duplicates",
        help="Mark new items that repeat a stored one (attrs.duplicate_of), so search can "
        "collapse them (--collapse-duplicates).",
    ),
]

CollapseOpt = Annotated[
    bool,
    typer.Option(
        "--collapse-duplicates",
        help="Show one hit per group of near-duplicates (marked by index --mark-duplicates).",
    ),
]

DupThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--duplicate-threshold",
        help="Pixel similarity of image copies for --mark-duplicates [default: as dedup's].",
    ),
]


class CareModality(StrEnum):
    image = "image"
    audio = "audio"
    text = "text"
    media = "media"


def mark_threshold(flag: bool, threshold: float | None) -> float | None:
    from retrieval.dedup import DEFAULT_THRESHOLD, check_threshold

    if threshold is not None and not flag:
        raise typer.BadParameter("--duplicate-threshold goes with --mark-duplicates.")
    return check_threshold(DEFAULT_THRESHOLD if threshold is None else threshold) if flag else None


def sync_dry_run(data_dir: Path, src: Any, json_out: bool) -> None:
    """`index SOURCE --sync --dry-run`: the plan, printed; nothing loaded or changed."""
    from indexer.sync import plan_sync
    from retrieval.catalogue import Catalogue

    with Catalogue.open(data_dir, create=False) as cat:
        plan = plan_sync(cat, src)
    if json_out:
        typer.echo(json.dumps(sync_json(plan), indent=2))
    else:
        print_sync(plan)


def sync_source(cat: Any, src: Any, progress: bool) -> Any:
    from indexer.sync import apply_sync, plan_sync

    return apply_sync(cat, plan_sync(cat, src), progress=progress)


def sync_json(plan: Any) -> dict[str, Any]:
    return {} if plan is None else {"sync": plan.to_json()}


def print_sync(plan: Any) -> None:
    if plan is None:
        return
    n = len(plan.doomed)
    verb = "Would remove" if plan.dry_run else "Removed"
    items = "item" if n == 1 else "items"
    typer.echo(f"{verb} {n} {items} of {plan.source} whose file or manifest entry is gone.")
    for item_id, key, why in plan.doomed[:MAX_LISTED]:
        typer.echo(f"  {'would remove' if plan.dry_run else 'removed'} {key} (id {item_id}): {why}")
    if n > MAX_LISTED:
        typer.echo(f"  ... and {n - MAX_LISTED} more (see --json)")
    if plan.kept_unreadable:
        typer.echo(
            f"  kept {plan.kept_unreadable} items whose manifest line cannot be read now: fix the "
            "line, or delete it, and sync again"
        )
    if plan.dry_run and n:
        typer.echo("Run the same command without --dry-run to remove them.")


def dedup(
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Pixel similarity at or above which two candidate images are copies "
            "[default: tuned by benchmarks/dedup_bench.py]."
        ),
    ] = None,
    vector_threshold: Annotated[
        float | None,
        typer.Option(help="Vector cosine for audio, text and unreadable image files [0.97]."),
    ] = None,
    modality: Annotated[CareModality, typer.Option(help="image, audio, text or media.")] = (
        CareModality.media
    ),
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
) -> None:
    """List groups of near-duplicate items (resized, re-encoded, cropped or exact copies)."""
    from tqdm import tqdm

    from retrieval.catalogue import Catalogue, default_data_dir
    from retrieval.dedup import (
        DEFAULT_THRESHOLD,
        VECTOR_THRESHOLD,
        check_threshold,
        find_duplicates,
    )

    t = check_threshold(DEFAULT_THRESHOLD if threshold is None else threshold)
    vt = check_threshold(VECTOR_THRESHOLD if vector_threshold is None else vector_threshold)
    mods = ["image", "audio"] if modality == CareModality.media else [str(modality)]
    groups = []
    with Catalogue.open(data_dir or default_data_dir(), create=False) as cat:
        total = sum(cat.index(m).count() for m in mods)
        with tqdm(total=total, desc="dedup", unit="item", disable=json_out) as bar:
            for m in mods:
                groups += find_duplicates(cat, m, t, vector_threshold=vt, on_batch=bar.update)
    if json_out:
        out = {"threshold": t, "vector_threshold": vt, "groups": [g.to_json() for g in groups]}
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(
        f"{len(groups)} groups of copies (images: pixels >= {t}; otherwise cosine >= {vt})"
        + (":" if groups else ".")
    )
    for n, g in enumerate(groups[:MAX_LISTED], 1):
        how = "exact copies" if g.exact else f"weakest link {g.min_score:.3f}"
        typer.echo(f"  {n}. {g.modality}, {len(g.ids)} items, {how}: {', '.join(g.keys)}")
    if len(groups) > MAX_LISTED:
        typer.echo(f"  ... and {len(groups) - MAX_LISTED} more (see --json)")


def evaluate(
    sample: Annotated[
        int, typer.Option(min=1, help="Captioned media to sample per modality.")
    ] = 500,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
) -> None:
    """Recall@1/5/10 of the live catalogue: its own captions as queries against the whole index
    (first stage and re-ranked), with gallery size, chance, and drift from the training data."""
    from retrieval.catalogue import Catalogue, default_data_dir
    from retrieval.encoders import create_encoder
    from retrieval.errors import CrossmediaError
    from retrieval.live_eval import run_eval, save_last_eval
    from retrieval.rerank import select_reranker
    from retrieval.search import SearchService

    with Catalogue.open(data_dir or default_data_dir(), create=False) as cat:
        if cat.space is None:
            raise CrossmediaError(f"The catalogue at {cat.data_dir} is empty: nothing to evaluate.")
        encoder = create_encoder(model or cat.space.model)
        service = SearchService(cat, encoder, reranker=select_reranker("auto", encoder))
        result = run_eval(cat, service, sample=sample, seed=seed)
        result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        save_last_eval(cat.data_dir, result)
    typer.echo(json.dumps(result, indent=2) if json_out else format_eval(result))


def format_eval(result: dict[str, Any]) -> str:
    lines = [
        f"Live recall of {result['model']} (sample {result['sample']} per modality, seed "
        f"{result['seed']}; queries: captions of the sampled media, vector first stage):",
        "",
        "| task | stage | R@1 | R@5 | R@10 | mAP@10 | queries | gallery | chance R@1 | chance R@10 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, row in result["tasks"].items():
        for stage in ("first_stage", "reranked"):
            if stage in row:
                m = row[stage]
                lines.append(
                    f"| {task} | {stage.replace('_', ' ')} | {m['R@1']:.3f} | {m['R@5']:.3f} | "
                    f"{m['R@10']:.3f} | {m['mAP@10']:.3f} | {row['queries']} | {row['gallery']} "
                    f"| {row['chance_R@1']:.4f} | {row['chance_R@10']:.4f} |"
                )
    lines.append("")
    for modality, d in result["drift"].items():
        lines.append(f"Drift ({modality}): {d['note']}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("dedup")(dedup)
    app.command("eval")(evaluate)
