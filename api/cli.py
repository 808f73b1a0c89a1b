"""The `crossmedia` command line: one table of subcommands, one function each."""

from __future__ import annotations

import json
import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_bench import register as register_bench
from api.cli_care import (
    CollapseOpt,
    DryRunOpt,
    DupThresholdOpt,
    MarkDupOpt,
    SyncOpt,
    mark_threshold,
    print_sync,
    sync_dry_run,
    sync_json,
    sync_source,
)
from api.cli_care import register as register_care
from api.cli_options import ModeOpt, WhereOpt
from api.cli_output import print_index_report, print_info, print_search, search_json
from api.cli_ray import RayOpt, ingestor_for
from api.cli_scale import register as register_scale
from api.cli_train import register as register_training
from api.process import passive_openmp
from retrieval.errors import CrossmediaError
from retrieval.fsutil import is_disk_full

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Index a media catalogue and search it across images, text and audio.",
)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Catalogue folder [default: $CROSSMEDIA_DATA_DIR or ./crossmedia-data]"
    ),
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Encoder name (see `crossmedia models`).")
]


WRITER_WAIT_S = 5.0


class Target(StrEnum):
    image = "image"
    text = "text"
    audio = "audio"
    any = "any"


def _data_dir(d: Path | None) -> Path:
    from retrieval.catalogue import default_data_dir

    return d or default_data_dir()


def _model_for(catalogue, model: str | None) -> str:  # noqa: ANN001
    from retrieval.encoders import DEFAULT_MODEL

    space = catalogue.space
    if model is None:
        return space.model if space is not None else DEFAULT_MODEL
    return model


@app.command()
def index(
    source: Annotated[Path, typer.Argument(help="A folder, an items.jsonl or a .csv manifest.")],
    data_dir: DataDir = None,
    model: ModelOpt = None,
    index_factory: Annotated[
        str | None,
        typer.Option(help="FAISS factory string for new indexes, e.g. Flat, IVF1024,Flat, HNSW32."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1024)] = 32,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    allow_outside: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-outside",
            help="Also index media under this folder (repeatable); by default only "
            "files inside the manifest's folder or the indexed folder.",
        ),
    ] = None,
    ray: RayOpt = None,
    sync: SyncOpt = False,
    dry_run: DryRunOpt = False,
    mark_duplicates: MarkDupOpt = False,
    duplicate_threshold: DupThresholdOpt = None,
) -> None:
    """Add a folder or manifest to the catalogue (incremental and idempotent)."""
    from indexer.sources import open_source
    from retrieval.catalogue import Catalogue

    src = open_source(source, allow_outside or None)
    if dry_run and not sync:
        raise typer.BadParameter("--dry-run shows what --sync would remove: add --sync.")
    if dry_run:
        return sync_dry_run(_data_dir(data_dir), src, json_out)
    with Catalogue.open(_data_dir(data_dir)) as cat:
        # Before the model loads, so the command started first wins; a few seconds' wait lets a
        # server finish the commit it is making.
        cat.lock_for_writing(timeout=WRITER_WAIT_S)
        if index_factory:
            cat.set_default_factory(index_factory)
        with ingestor_for(cat, _model_for(cat, model), ray, batch_size) as ingestor:  # local or Ray
            ingestor.duplicate_threshold = mark_threshold(mark_duplicates, duplicate_threshold)
            report = ingestor.ingest(src, progress=not json_out)
        synced = sync_source(cat, src, progress=not json_out) if sync else None
        for note in cat.repairs:
            typer.echo(f"repaired: {note}", err=True)
    if json_out:
        typer.echo(json.dumps({**report.to_json(), **sync_json(synced)}, indent=2))
    else:
        print_index_report(report)
        print_sync(synced)


@app.command()
def search(
    text: Annotated[str | None, typer.Option("--text", help="Text query.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="Image file query.")] = None,
    audio: Annotated[Path | None, typer.Option("--audio", help="Audio file query.")] = None,
    target: Annotated[Target, typer.Option(help="Modality to return.")] = Target.any,
    k: Annotated[int, typer.Option("-k", min=1, max=1000)] = 10,
    mode: ModeOpt = None,
    where: WhereOpt = None,
    rerank: Annotated[
        bool, typer.Option("--rerank/--no-rerank", help="Re-rank the top candidates.")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDir = None,
    model: ModelOpt = None,
    collapse: CollapseOpt = False,
) -> None:
    """Search the catalogue with a text, an image or an audio query."""
    from retrieval.catalogue import Catalogue
    from retrieval.dedup import search_with_collapse
    from retrieval.encoders import create_encoder
    from retrieval.encoders.factory import text_query_encoder
    from retrieval.filters import parse_where
    from retrieval.rerank import select_reranker
    from retrieval.search import SearchService

    if sum(x is not None for x in (text, image, audio)) != 1:
        raise typer.BadParameter("Give exactly one of --text, --image or --audio.")
    filters = parse_where(where) if where else None
    with Catalogue.open(_data_dir(data_dir), create=False) as cat:
        if cat.space is None:
            raise CrossmediaError(
                f"The catalogue at {cat.data_dir} is empty. Run `crossmedia index` first."
            )
        name = _model_for(cat, model)  # typed text needs no torch (starter_text_np.py)
        encoder = text_query_encoder(name) if text is not None else create_encoder(name)
        query = _query(text, image, audio)
        service = SearchService(
            cat, encoder, reranker=select_reranker("auto" if rerank else "none", encoder)
        )
        result = search_with_collapse(
            service,
            query,
            collapse_duplicates=collapse,
            target=str(target),
            k=k,
            rerank=rerank,
            filters=filters,
            mode=None if mode is None else str(mode),
        )
        out = search_json(result, text, image, audio)
    if json_out:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print_search(result)


def _query(text: str | None, image: Path | None, audio: Path | None) -> Any:
    from retrieval.media.image import decode_image
    from retrieval.search import Query

    if image is not None:
        return Query(image=decode_image(image))
    if audio is not None:
        from retrieval.media.audio import decode_audio

        return Query(audio=decode_audio(audio))
    return Query(text=text)


@app.command()
def info(
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts per modality, embedding space, index types and sizes; checks the index files
    against the store and says what it repaired."""
    from retrieval.catalogue import Catalogue
    from retrieval.catalogue_check import describe

    with Catalogue.open(_data_dir(data_dir), create=False) as cat:
        cat.verify_indexes()
        data = describe(cat)
        errors = cat.store.errors(20)
    if json_out:
        typer.echo(json.dumps(data, indent=2))
        return
    print_info(data, errors)


@app.command()
def verify(
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The full check: index files against their checksums and the store's ids and vectors;
    repairs what it can. Exits 1 when a problem remains."""
    from retrieval.catalogue import Catalogue
    from retrieval.catalogue_check import verify as verify_catalogue

    with Catalogue.open(_data_dir(data_dir), create=False) as cat:
        report = verify_catalogue(cat)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        for note in report["repairs"]:
            typer.echo(f"repaired: {note}")
        for problem in report["problems"]:
            typer.echo(f"problem: {problem}")
        checked = ", ".join(f"{n} {m}" for m, n in report["vectors_checked"].items() if n)
        typer.echo(("OK" if report["ok"] else "FAILED") + f": vectors checked: {checked or 'none'}")
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Bind address [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    model: ModelOpt = None,
    settings_file: Annotated[
        Path | None, typer.Option(help="Optional settings file (env vars win).")
    ] = None,
) -> None:
    """Serve the HTTP API and the web page (settings from CROSSMEDIA_* variables)."""
    from api.server import serve as run_server

    run_server(data_dir, host, port, model, settings_file=settings_file)


@app.command()
def models() -> None:
    """List the encoder names this installation knows."""
    from retrieval.encoders import list_models

    for name in list_models():
        typer.echo(name)


register_training(app)  # align, align-audio, train-reranker (api/cli_train.py)
register_bench(app)  # bench recall (api/cli_bench.py)
register_care(app)  # dedup, eval (api/cli_care.py)
register_scale(app)  # import-vectors (api/cli_scale.py)


def main() -> None:
    passive_openmp()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except CrossmediaError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        typer.echo(
            f"error: the disk is full ({exc.filename or exc}). Free some space and run the "
            "same command again; the catalogue is consistent.",
            err=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
