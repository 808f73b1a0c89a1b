"""`crossmedia import-vectors`: bring vectors computed elsewhere (indexer/import_vectors.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

WRITER_WAIT_S = 5.0


def import_vectors_cmd(
    vectors: Annotated[Path, typer.Argument(help="VECTORS.npy: (N, dim) float32 rows.")],
    manifest: Annotated[
        Path,
        typer.Option(
            "--manifest",
            help="ITEMS.jsonl: line i describes row i (id; path, text, captions, attrs optional).",
        ),
    ],
    modality: Annotated[str, typer.Option(help="image, text or audio.")] = "image",
    model: Annotated[
        str | None,
        typer.Option(help="The model whose space the vectors are in [default: the catalogue's]."),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import vectors computed elsewhere (e.g. clip-retrieval or autofaiss inputs)."""
    from indexer.import_vectors import import_vectors
    from retrieval.catalogue import Catalogue, default_data_dir
    from retrieval.encoders import DEFAULT_MODEL, create_encoder
    from retrieval.encoders.spaces import space_of

    with Catalogue.open(data_dir or default_data_dir()) as cat:
        cat.lock_for_writing(timeout=WRITER_WAIT_S)
        space = cat.space
        encoder = None
        if space is None or (model is not None and model != space.model):
            name = model or DEFAULT_MODEL
            space = space_of(name)  # read from the model's config: no weights loaded
            if space is None:
                encoder = create_encoder(name)
                space = encoder.space

        def text_encoder():  # noqa: ANN202 - loaded only when the manifest has captions
            return encoder or create_encoder(space.model)

        report = import_vectors(
            cat, vectors, manifest, space, modality, text_encoder, progress=not json_out
        )
    if json_out:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    secs = sum(report.seconds.values())
    typer.echo(
        f"Imported {report.rows} rows in {secs:.1f} s ({report.rows / max(secs, 1e-9):,.0f}/s): "
        f"{report.added} added, {report.replaced} replaced, {report.unchanged} unchanged, "
        f"{report.captions} captions."
    )
    if report.renormalised:
        typer.echo(f"{report.renormalised} rows were not unit length and were normalised.")
    for modality_name, idx in report.index.items():
        typer.echo(f"  {modality_name}: {idx['factory']} index, {idx['count']} vectors")


def register(app: typer.Typer) -> None:
    app.command("import-vectors")(import_vectors_cmd)
