"""`crossmedia index SOURCE --sync` (issue 17): items whose file or manifest entry is gone leave
the store, the indexes and the lexical channel; uploads and other sources' items stay; a kill -9
in the middle of a sync followed by the same command ends the same."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import coco_entries, sqlite_url, write_manifest
from typer.testing import CliRunner

from api.cli import app
from retrieval.catalogue import Catalogue
from tests.kill_campaign import KILLABLE, ROOT, Tally, _check_lexical
from tests.kill_campaign import run_cli as cli_subprocess


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, tiny_encoder: Any) -> None:
    import retrieval.encoders as encoders

    monkeypatch.delenv("CROSSMEDIA_DB_URL", raising=False)
    monkeypatch.delenv("CROSSMEDIA_SYNC", raising=False)
    real = encoders.create_encoder
    monkeypatch.setattr(
        encoders,
        "create_encoder",
        lambda name="starter", device=None: tiny_encoder if name == "tiny-test" else real(name),
    )


def cli(*args: Any) -> dict[str, Any]:
    result = CliRunner().invoke(app, [str(a) for a in args] + ["--json"], catch_exceptions=True)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def index(source: Path, data_dir: Path, *extra: str) -> dict[str, Any]:
    return cli("index", source, "--data-dir", data_dir, "--model", "tiny-test", *extra)


def photo_folder(folder: Path, n: int, skip: int = 0) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for e in coco_entries(n, skip):
        out.append(folder / Path(e["image"]).name)
        shutil.copy(e["image"], out[-1])
    return out


def assert_consistent(data_dir: Path, want_keys: set[str]) -> None:
    """The store holds exactly `want_keys`; every index and the lexical channel match it."""
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir), create=False) as cat:
        assert {r.key for r in cat.store.iter_items()} == want_keys
        for modality in ("image", "text"):
            assert np.array_equal(cat.index(modality).ids(), cat.store.ids(modality)), modality
        assert cat.verify_indexes() == []
        tally = Tally()
        _check_lexical(cat, tally)
        assert tally.lexical_mismatches == 0, tally.notes


def test_folder_sync_removes_exactly_the_deleted_files(tmp_path: Path, tiny_encoder: Any) -> None:
    from indexer.pipeline import Ingestor
    from indexer.uploads import add_upload

    a = photo_folder(tmp_path / "a", 9)
    b = photo_folder(tmp_path / "b", 3, skip=9)  # another source: its deletions are not a's
    (tmp_path / "a" / "note.txt").write_text("a note about the photos")
    data_dir = tmp_path / "data"
    index(tmp_path / "a", data_dir)
    index(tmp_path / "b", data_dir)
    with Catalogue.open(data_dir) as cat:
        upload = add_upload(Ingestor(cat, tiny_encoder), a[0].read_bytes(), "mine.jpg").key
    for p in [a[1], a[4], a[8], b[0]]:
        p.unlink()
    (tmp_path / "a" / "note.txt").unlink()
    kept = {str(p) for p in a + b if p.exists()} | {str(b[0]), upload}

    plan = index(tmp_path / "a", data_dir, "--sync", "--dry-run")["sync"]
    assert plan["dry_run"] and len(plan["to_remove"]) == 4
    assert {r["key"] for r in plan["to_remove"]} == {
        str(a[1]),
        str(a[4]),
        str(a[8]),
        str(tmp_path / "a" / "note.txt"),
    }
    assert_consistent(data_dir, kept | {r["key"] for r in plan["to_remove"]})  # unchanged

    report = index(tmp_path / "a", data_dir, "--sync")
    assert report["sync"]["removed"] == {"image": 3, "text": 1}
    assert_consistent(data_dir, kept)
    again = index(tmp_path / "a", data_dir, "--sync")
    assert again["sync"]["removed"] == {} and again["added"] == {}


def test_manifest_sync_keeps_other_manifests_and_unreadable_lines(tmp_path: Path) -> None:
    rows = coco_entries(7)
    for i, r in enumerate(rows):
        r["id"] = f"p{i}"
    other = coco_entries(2, skip=7)  # a manifest with the same file name, elsewhere
    for i, r in enumerate(other):
        r["id"] = f"q{i}"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    shutil.copy(rows[5]["image"], tmp_path / "one" / "p5.jpg")  # a file this test deletes
    rows[5]["image"] = "p5.jpg"
    one = write_manifest(tmp_path / "one" / "items.jsonl", rows)
    two = write_manifest(tmp_path / "two" / "items.jsonl", other)
    data_dir = tmp_path / "data"
    index(one, data_dir)
    index(two, data_dir)
    all_keys = _keys(data_dir)

    rows[3]["captions"] = rows[3]["captions"][:2]  # three captions fewer
    edited = [rows[0], rows[1], '{"id": "p2", "image": ', rows[3], rows[5]]  # p4, p6 gone
    write_manifest(one, edited)
    (tmp_path / "one" / "p5.jpg").unlink()  # still listed, but its file is gone
    report = index(one, data_dir, "--sync")
    gone = {f"p{i}" for i in (4, 5, 6)}
    gone |= {f"p{i}#caption{c}" for i in (4, 5, 6) for c in range(5)}
    gone |= {f"p3#caption{c}" for c in (2, 3, 4)}
    assert report["sync"]["kept_unreadable"] == 6  # p2 and its five captions: a broken line
    assert report["sync"]["removed"] == {"image": 3, "text": 15}
    whys = {r["key"]: r["why"] for r in report["sync"]["removed_items"]}
    assert whys["p5"] == "file is gone" and whys["p4"] == "no entry in items.jsonl"
    assert report["removed_captions"] == 3  # the pipeline's own pruning of p3
    assert_consistent(data_dir, all_keys - gone)


def _keys(data_dir: Path) -> set[str]:
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir), create=False) as cat:
        return {r.key for r in cat.store.iter_items()}


def test_dry_run_needs_sync(tmp_path: Path) -> None:
    photo_folder(tmp_path / "a", 1)
    result = CliRunner().invoke(app, ["index", str(tmp_path / "a"), "--dry-run"])
    assert result.exit_code != 0 and "add --sync" in result.output


# `crossmedia ARGS` that SIGKILLs itself right after the N-th chunk of a sync's deletions (two
# items a chunk): the store has committed that chunk, the index files have not been saved.
KILL_AFTER_CHUNK = """
import os, signal, sys
import indexer.sync
from retrieval.catalogue import Catalogue
indexer.sync.CHUNK = 2
n, calls, real = int(sys.argv[1]), [0], Catalogue.delete_ids
def delete_ids(self, ids, save=True):
    out = real(self, ids, save)
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return out
Catalogue.delete_ids = delete_ids
sys.argv = ["crossmedia", *sys.argv[2:]]
from api.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["chunk-1", "chunk-2", "save-1"])
def test_kill_9_in_the_middle_of_a_sync_then_rerun(tmp_path: Path, how: str) -> None:
    """Killed after the first or second chunk of deletions (store committed, files not saved),
    or at the first atomic file replace of the sync's save; then the same command."""
    photos = photo_folder(tmp_path / "a", 12)
    data_dir = tmp_path / "data"
    args = ["index", str(tmp_path / "a"), "--data-dir", str(data_dir), "--model", "tiny-test"]
    assert cli_subprocess(*args).returncode == 0
    for p in photos[::2]:
        p.unlink()
    kind, n = how.split("-")
    runner = [*KILLABLE, n, "--"] if kind == "save" else [sys.executable, "-c", KILL_AFTER_CHUNK, n]
    killed = subprocess.run([*runner, *args, "--sync"], cwd=ROOT, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = len(_keys(data_dir))
    assert 6 <= left < 12  # some deletions committed before the kill
    if kind == "chunk":
        assert left == 12 - 2 * int(n)
    rerun = cli_subprocess(*args, "--sync", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert_consistent(data_dir, {str(p) for p in photos[1::2]})
