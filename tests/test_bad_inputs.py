"""The bad-input corpus (tests/bad_inputs.py) indexed through the CLI, as a manifest and as a
folder: the run completes (rc 0), every good input is indexed, every bad one is reported with a
specific reason, memory stays bounded on /dev/zero, and the catalogue is consistent."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bad_inputs import (
    WithAudio,
    build_corpus,
    corpus_outcomes,
    media_bytes,
    outcomes,
    reads_anything,
)
from typer.testing import CliRunner

from api.cli import app
from retrieval.catalogue import Catalogue
from retrieval.limits import MAX_TEXT_CHARS


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> dict[str, Any]:
    """The corpus, indexed once per source through `crossmedia index --json`."""
    import retrieval.encoders as encoders

    root = tmp_path_factory.mktemp("bad_inputs")
    corpus = build_corpus(root / "corpus")
    mp = pytest.MonkeyPatch()
    mp.delenv("CROSSMEDIA_DB_URL", raising=False)
    mp.delenv("CROSSMEDIA_MEDIA_ROOTS", raising=False)
    mp.setattr(encoders, "create_encoder", lambda name, device=None: WithAudio(tiny_encoder))
    runs: dict[str, Any] = {}
    try:
        allow = [a for p in corpus.allow_outside for a in ("--allow-outside", str(p))]
        for source, path, extra in (
            ("manifest", corpus.manifest, allow),
            ("folder", corpus.folder, []),
        ):
            data_dir = root / f"data-{source}"
            result = CliRunner().invoke(
                app,
                [
                    "index",
                    str(path),
                    "--data-dir",
                    str(data_dir),
                    "--model",
                    "tiny-test",
                    "--batch-size",
                    "7",
                    "--json",
                    *extra,
                ],
            )
            runs[source] = {"result": result, "data_dir": data_dir}
    finally:
        mp.undo()
    return {"corpus": corpus, "runs": runs}


@pytest.mark.parametrize("source", ["manifest", "folder"])
def test_run_completes_and_every_input_ends_as_expected(
    indexed: dict[str, Any], source: str
) -> None:
    result = indexed["runs"][source]["result"]
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    cases = [c for c in indexed["corpus"].cases if c.source == source]
    rows = outcomes(cases, {source: report})
    wrong = [r for r in rows if r["outcome"] != r["expected"]]
    assert not wrong, wrong
    for case, row in zip(cases, rows, strict=True):
        assert case.word in row["detail"], (case.name, row["detail"])
    # Nothing reported that is not a known case (every bad input is accounted for).
    known = {c.where for c in cases}
    assert {f["where"] for f in report["failed"]} <= known
    assert {w["where"] for w in report["warnings"]} <= known


@pytest.mark.parametrize("source", ["manifest", "folder"])
def test_good_inputs_are_stored_and_the_catalogue_is_consistent(
    indexed: dict[str, Any], source: str
) -> None:
    data_dir = indexed["runs"][source]["data_dir"]
    cases = [c for c in indexed["corpus"].cases if c.source == source]
    with Catalogue.open(
        data_dir, create=False, db_url=f"sqlite:///{data_dir.resolve() / 'catalogue.db'}"
    ) as cat:
        for case in cases:
            if case.outcome in ("indexed", "truncated"):
                item = cat.store.get_by_key(case.key)
                assert item is not None, case
                if case.outcome == "truncated":
                    assert item.text is not None and len(item.text) == MAX_TEXT_CHARS
        for modality in ("image", "text", "audio"):
            np.testing.assert_array_equal(cat.index(modality).ids(), cat.store.ids(modality))
        expected_errors = sum(c.outcome == "skipped" for c in cases)
        assert cat.store.error_count() == expected_errors


def test_dev_zero_and_a_fifo_cost_no_memory(
    tmp_path: Path, tiny_encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 2: /dev/zero (never ends) and a FIFO (an open waits for a writer) are refused
    from fstat, before any read: the run ends, memory barely moves."""
    import os

    from indexer.pipeline import Ingestor
    from indexer.sources import ManifestSource

    media = build_corpus(tmp_path / "corpus").root / "set" / "m"
    os.mkfifo(tmp_path / "pipe.jpg")
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(
        json.dumps({"id": "zero", "image": "/dev/zero"})
        + "\n"
        + json.dumps({"id": "pipe", "image": "pipe.jpg"})
        + "\n"
        + json.dumps({"id": "good", "image": str(media / "good.jpg")})
        + "\n"
    )
    data_dir = tmp_path / "data"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with Catalogue.open(data_dir, db_url=f"sqlite:///{data_dir / 'catalogue.db'}") as cat:
        monkeypatch.setenv(
            "CROSSMEDIA_MEDIA_ROOTS", f"/dev{os.pathsep}{media}"
        )  # as --allow-outside
        source = ManifestSource(manifest)
        report = Ingestor(cat, tiny_encoder).ingest(source, progress=False)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 300, grown_mb
    assert report.added == {"image": 1}
    reasons = dict(report.failed)
    assert "not a regular file (character device)" in reasons["items.jsonl:1"]
    assert "not a regular file (FIFO" in reasons["items.jsonl:2"]


def test_corpus_outcomes_summary(
    tmp_path: Path, tiny_encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table benchmarks/bad_inputs.py prints: every input ends as expected."""
    monkeypatch.delenv("CROSSMEDIA_MEDIA_ROOTS", raising=False)
    rows = corpus_outcomes(tmp_path, tiny_encoder)
    assert [r for r in rows if r["outcome"] != r["expected"]] == []
    assert len(rows) >= 40
    assert ("unreadable file (chmod 000)" in {r["input"] for r in rows}) != reads_anything()
    (tmp_path / "bad_inputs.json").write_text(json.dumps(rows, indent=1))


def _cli_index(source: Path, data_dir: Path, encoder: Any, *extra: str) -> Any:
    import retrieval.encoders as encoders

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CROSSMEDIA_DB_URL", raising=False)
        mp.delenv("CROSSMEDIA_MEDIA_ROOTS", raising=False)
        mp.setattr(encoders, "create_encoder", lambda name, device=None: encoder)
        return CliRunner().invoke(
            app,
            [
                "index",
                str(source),
                "--data-dir",
                str(data_dir),
                "--model",
                "tiny-test",
                "--json",
                *extra,
            ],
        )


def test_one_bad_manifest_line_does_not_abort_the_run(tmp_path: Path, tiny_encoder: Any) -> None:
    """Finding 4: a non-UTF-8 line and a symlink loop used to end the run with rc 1."""
    (tmp_path / "good.jpg").write_bytes(media_bytes()["good.jpg"])
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    manifest = tmp_path / "items.jsonl"
    manifest.write_bytes(
        b'{"id": "latin", "caption": "caf\xe9"}\n'
        b'{"id": "loop", "image": "loop.jpg"}\n'
        b'{"id": "good", "image": "good.jpg", "caption": "noise"}\n'
    )
    result = _cli_index(manifest, tmp_path / "data", tiny_encoder)
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    assert report["added"] == {"image": 1, "text": 1}
    reasons = {f["where"]: f["reason"] for f in report["failed"]}
    assert "not UTF-8 (byte 0xe9" in reasons["items.jsonl:1"]
    assert "symlink loop" in reasons["items.jsonl:2"]


def test_paths_outside_the_manifest_folder_need_allow_outside(
    tmp_path: Path, tiny_encoder: Any
) -> None:
    """Finding 3a: an absolute or ../ path to an image elsewhere used to be indexed."""
    home, elsewhere = tmp_path / "set", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    (elsewhere / "secret.jpg").write_bytes(media_bytes()["good.jpg"])
    manifest = home / "items.jsonl"
    manifest.write_text(
        json.dumps({"id": "abs", "image": str(elsewhere / "secret.jpg")})
        + "\n"
        + json.dumps({"id": "up", "image": "../elsewhere/secret.jpg"})
        + "\n"
    )
    result = _cli_index(manifest, tmp_path / "data", tiny_encoder)
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    assert report["added"] == {} and len(report["failed"]) == 2
    assert all("--allow-outside" in f["reason"] for f in report["failed"])
    result = _cli_index(
        manifest, tmp_path / "data2", tiny_encoder, "--allow-outside", str(elsewhere)
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.stdout)["added"] == {"image": 2}


def test_huge_captions_texts_and_ids_are_limited(tmp_path: Path, tiny_encoder: Any) -> None:
    """Finding 8: captions and texts are cut to MAX_TEXT_CHARS with a warning; an id too long
    for the key column is refused, not passed to the store."""
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(
        "".join(
            json.dumps(o) + "\n"
            for o in (
                {"id": "cap", "captions": ["ok", "c" * (MAX_TEXT_CHARS + 7)]},
                {"id": "txt", "text": "t" * (MAX_TEXT_CHARS * 3)},
                {"id": "i" * 1100, "caption": "x"},
            )
        )
    )
    result = _cli_index(manifest, tmp_path / "data", tiny_encoder)
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    assert report["added"] == {"text": 3}
    assert report["warnings"] == [
        {
            "where": "items.jsonl:1",
            "message": f"caption 1 truncated from {MAX_TEXT_CHARS + 7} to {MAX_TEXT_CHARS} characters",
        },
        {
            "where": "items.jsonl:2",
            "message": f"text truncated from {MAX_TEXT_CHARS * 3} to {MAX_TEXT_CHARS} characters",
        },
    ]
    assert [f["where"] for f in report["failed"]] == ["items.jsonl:3"]
    assert "too long" in report["failed"][0]["reason"]
