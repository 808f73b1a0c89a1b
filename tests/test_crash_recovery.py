"""kill -9 during ingestion, then the same command again: the catalogue must be consistent."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = pytest.mark.slow


def _manifest(tmp: Path, n: int) -> Path:
    src = DATA / "coco_mini" / "items.jsonl"
    if not src.is_file():
        pytest.skip(f"real data missing: {src} (see ../shared/data/README.md)")
    lines = src.read_text().splitlines()[:n]
    out = tmp / "items.jsonl"
    rows = []
    for line in lines:
        obj = json.loads(line)
        obj["image"] = str((src.parent / obj["image"]).resolve())
        rows.append(json.dumps(obj))
    out.write_text("\n".join(rows) + "\n")
    return out


def _cmd(manifest: Path, data_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "api.cli",
        "index",
        str(manifest),
        "--data-dir",
        str(data_dir),
        "--allow-outside",
        str(DATA),
        "--model",
        "tiny-test",
        "--batch-size",
        "3",
    ]


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("select count(*) from items").fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_mid_run(manifest: Path, data_dir: Path, min_rows: int, extra_delay: float) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        _cmd(manifest, data_dir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1],
    )
    deadline = time.monotonic() + 120
    while _rows(data_dir / "catalogue.db") < min_rows and proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("ingestion made no progress in 120 s")
        time.sleep(0.02)
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


def _check_consistent(data_dir: Path, n_images: int, n_captions: int) -> None:
    from retrieval.catalogue import Catalogue
    from retrieval.encoders import create_encoder
    from retrieval.media.image import decode_image
    from retrieval.search import Query, SearchService

    with Catalogue.open(data_dir, create=False) as cat:
        assert cat.counts() == {"image": n_images, "text": n_captions}
        for modality in ("image", "text"):
            index_ids = cat.index(modality).ids()
            store_ids = cat.store.ids(modality)
            assert len(np.unique(index_ids)) == len(index_ids), "duplicate ids in the index"
            assert np.array_equal(index_ids, store_ids), f"{modality}: index and store differ"
        keys = [r.key for r in cat.store.iter_items()]
        assert len(keys) == len(set(keys))
        service = SearchService(cat, create_encoder("tiny-test"))
        images = list(cat.store.iter_items("image"))
        for rec in images[:: max(1, len(images) // 6)]:
            hits = service.search(
                Query(image=decode_image(Path(rec.path))), target="image", k=1
            ).hits
            assert hits[0].id == rec.id


def test_kill_9_during_ingestion_then_rerun_is_consistent(tmp_path: Path) -> None:
    n = 40
    manifest = _manifest(tmp_path, n)
    data_dir = tmp_path / "cat"
    rng = random.Random(7)
    killed = 0
    # Kill at different moments: early, mid and late in the run, each time after some commits.
    for min_rows in (3, 60, 150):
        code = _kill_mid_run(manifest, data_dir, min_rows, rng.uniform(0.0, 0.4))
        killed += code == -signal.SIGKILL
    assert killed >= 2, "the runs finished before they could be killed; the test proved nothing"
    done = subprocess.run(
        _cmd(manifest, data_dir),
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    n_captions = sum(
        len(json.loads(line)["captions"]) for line in manifest.read_text().splitlines()
    )
    _check_consistent(data_dir, n, n_captions)
    again = subprocess.run(
        _cmd(manifest, data_dir) + ["--json"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["added"] == {}
