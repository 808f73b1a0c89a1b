"""How the CLI prints its reports for a person (`--json` prints the data as it is)."""

from __future__ import annotations

from typing import Any

import typer

from retrieval.index_tuning import describe_tuning

MAX_LISTED = 50


def print_index_report(report: Any) -> None:  # indexer.pipeline.IngestReport
    added = ", ".join(f"{n} {m}" for m, n in sorted(report.added.items())) or "nothing new"
    typer.echo(
        f"Indexed {report.entries} entries from {report.source}: added {added}; "
        f"{report.unchanged} unchanged, {report.replaced} replaced, "
        f"{len(report.failed)} skipped."
    )
    s = report.seconds
    typer.echo(
        f"Time: read {s['read']:.1f}s, decode {s['decode']:.1f}s, encode {s['encode']:.1f}s, "
        f"write {s['write']:.1f}s."
    )
    for label, rows in (("warning", getattr(report, "warnings", [])), ("skipped", report.failed)):
        for where, reason in rows[:MAX_LISTED]:
            typer.echo(f"  {label} {where}: {reason}", err=True)
        if len(rows) > MAX_LISTED:
            typer.echo(
                f"  ... and {len(rows) - MAX_LISTED} more (see `crossmedia info` or --json)",
                err=True,
            )


def print_info(data: dict[str, Any], errors: list[tuple[str, str | None, str]]) -> None:
    typer.echo(f"Catalogue: {data['data_dir']}  (store: {data['db']})")
    sp = data["space"]
    typer.echo(
        "Space:     "
        + (
            "empty (no model yet)"
            if sp is None
            else f"{sp['model']}  heads={sp['head_version'] or '-'}  dim={sp['dim']}"
        )
    )
    for m, n in sorted(data["counts"].items()):
        idx = data["indexes"].get(m, {})
        typer.echo(
            f"  {m:6s} {n:8d} items   index {idx.get('factory', '-')}, "
            f"{idx.get('bytes', 0) / 1e6:.2f} MB + {(idx.get('delta_bytes') or 0) / 1e6:.2f} MB "
            f"delta; {describe_tuning(idx.get('search'))}"
        )
    for note in data.get("repairs", []):
        typer.echo(f"Repaired:  {note}")
    if data.get("degraded"):
        typer.echo(f"Degraded:  {data['degraded']}")
    if not data.get("repairs"):
        typer.echo("Index files: consistent with the store")
    typer.echo(f"Skipped files recorded: {data['skipped_files']}")
    for key, where, reason in errors:
        typer.echo(f"  {where or key}: {reason}")


def print_search(result: Any) -> None:  # retrieval.results.SearchResult
    if result.query.get("transcript"):
        typer.echo(f"heard: {result.query['transcript']}", err=True)
    for rank, hit in enumerate(result.hits, 1):
        label = hit.text if hit.modality == "text" else hit.path
        where = f" @ {hit.segment['offset_s']:.0f}s" if hit.segment else ""
        why = next((m["text"] for m in hit.matched if m.get("text") and m["text"] != label), None)
        because = f'  <- "{why}"' if why else ""
        typer.echo(f"{rank:3d}. {hit.score:.4f}  [{hit.modality}] {label}{where}{because}")
    typer.echo(" ".join(f"{k}={v:.1f}ms" for k, v in result.timings_ms.items()), err=True)


def search_json(result: Any, text: str | None, image: Any, audio: Any) -> dict[str, Any]:
    """The search result as JSON, the query as the user gave it, plus the mode it ran in."""
    out = result.to_json()
    described = out["query"]
    out["mode"] = described.get("mode")
    if text is not None:
        out["query"] = text
    elif image is not None:
        out["query"] = {"image": str(image)}
    else:
        out["query"] = {"audio": str(audio), "transcript": described.get("transcript")}
    return out
