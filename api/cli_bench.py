"""`crossmedia bench ...`: recall@k through the real search path (see indexer/bench_recall.py)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: recall@k and more.")


class Mode(StrEnum):
    vector = "vector"
    lexical = "lexical"
    hybrid = "hybrid"


@bench_app.command("recall")
def bench_recall(
    manifest: Annotated[Path, typer.Argument(help="An items.jsonl manifest (captions or labels).")],
    model: Annotated[
        str | None, typer.Option("--model", help="Encoder [default: the default model].")
    ] = None,
    split: Annotated[str, typer.Option(help="all, train, val or test (split by item id).")] = "all",
    rerank: Annotated[bool, typer.Option("--rerank/--no-rerank")] = False,
    label_prompt: Annotated[
        str | None, typer.Option(help="Prompt for labelled sets, e.g. '{label}' for spoken words.")
    ] = None,
    mode: Annotated[
        Mode | None,
        typer.Option(help="vector, lexical or hybrid [default: hybrid where the query has words]"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recall@1/5/10 and mAP@10 for every direction the manifest allows."""
    from indexer.bench_recall import format_table, run_recall_bench, to_json
    from retrieval.encoders import DEFAULT_MODEL

    if split not in ("all", "train", "val", "test"):
        raise typer.BadParameter("split must be all, train, val or test")
    result = run_recall_bench(
        manifest,
        model=model or DEFAULT_MODEL,
        split=split,
        rerank=rerank,
        label_prompt=label_prompt,
        progress=not json_out,
        mode=None if mode is None else str(mode),
    )
    typer.echo(to_json(result) if json_out else format_table(result))


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
