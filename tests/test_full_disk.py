"""A full disk (issue 11, finding 7), on a real 8 MB tmpfs: reads keep working (a repair that
cannot be saved stays in memory), writes fail with one line naming the cause, and nothing is
half-written. Needs root and a kernel that lets this machine mount tmpfs; skipped otherwise."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kill_campaign import COCO, make_manifest
from tests.kill_campaign import run_cli as _cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (COCO / "items.jsonl").is_file(), reason=f"real photos missing: {COCO}"),
]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> None:
    with (folder / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    for _ in range(64):  # squeeze out the last blocks too
        try:
            with (folder / f"filler-{_}").open("wb") as f:
                f.write(b"\0" * 4096)
        except OSError:
            break


def test_full_disk_reads_work_writes_fail_cleanly(small_disk: Path, tmp_path: Path) -> None:
    first, _ = make_manifest(tmp_path / "src1", 6)
    data_dir = small_disk / "cat"
    assert (
        _cli("index", str(first), "--data-dir", str(data_dir), "--model", "tiny-test").returncode
        == 0
    )
    before = _cli("info", "--data-dir", str(data_dir), "--json").stdout
    (data_dir / "index" / "text.faiss").write_bytes(b"torn")  # a repair will be needed
    _fill(small_disk)

    found = _cli("search", "--text", "a dog", "--data-dir", str(data_dir), "--json", "--no-rerank")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"], found.stdout  # answered from the in-memory repair
    assert "cannot save" in found.stderr, found.stderr

    second, _ = make_manifest(tmp_path / "src2", 12)
    wrote = _cli("index", str(second), "--data-dir", str(data_dir), "--model", "tiny-test")
    assert wrote.returncode == 2, (wrote.returncode, wrote.stderr[-800:])
    lines = [ln for ln in wrote.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert "Traceback" not in wrote.stderr
    assert lines[-1].startswith("error: ") and "full" in lines[-1], wrote.stderr[-800:]

    for f in small_disk.glob("filler*"):
        f.unlink()
    after = _cli("info", "--data-dir", str(data_dir), "--json")
    assert after.returncode == 0
    assert (
        json.loads(after.stdout)["counts"] == json.loads(before)["counts"]
    )  # nothing half-written
    assert _cli("verify", "--data-dir", str(data_dir)).returncode == 0
