"""`crossmedia index SOURCE --ray ADDRESS`: the same ingestion on a Ray cluster.

Ray is an optional extra (`pip install -e '.[ray]'`): nothing here imports it until `--ray` is
given, and without it `--ray` fails with the install command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Run on Ray: 'local' (a new Ray instance on this machine), 'auto' (the cluster "
        "this machine joined with `ray start`, or $RAY_ADDRESS) or HEAD:6379. Needs "
        "pip install -e '.[ray]'.",
    ),
]


@contextmanager
def ingestor_for(catalogue: Any, model: str, ray: str | None, batch_size: int) -> Iterator[Any]:
    """The local `Ingestor` (the encoder loaded here), or with `ray` a `RayIngestor` whose
    actors load it on the cluster; both have `ingest(source, progress)`."""
    if not ray:
        from indexer.pipeline import Ingestor
        from retrieval.encoders import create_encoder

        yield Ingestor(catalogue, create_encoder(model), batch_size=batch_size)
        return
    from indexer.ray_cluster import RayOptions
    from indexer.ray_ingest import RayIngestor

    with RayIngestor(catalogue, model, RayOptions(address=ray), batch_size=batch_size) as ri:
        yield ri
