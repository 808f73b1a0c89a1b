"""Option types shared by CLI commands (typed arguments are the flags)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli_bench import Mode

ModeOpt = Annotated[
    Mode | None,
    typer.Option(
        help="vector, lexical or hybrid [default: hybrid when the query has words, else vector]"
    ),
]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where", help="Filter, repeatable: 'label=cat', 'duration>=2', 'label in cat,dog'."
    ),
]
