"""The kill -9 campaign: crash `crossmedia index` and `crossmedia serve` (during uploads) at
random points, including in the middle of saving an index file, then run again and check that
nothing acknowledged was lost, nothing is duplicated and the index files match the store.

Shared by tests/test_kill_campaign.py (CI, bounded) and benchmarks/kill_campaign.py (the table in
benchmarks/RESULTS.md). Seeded; every process runs on this machine, the server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT.parent / "shared" / "data" / "coco_mini"
KILLABLE = [sys.executable, str(ROOT / "tests" / "killable.py")]


@dataclass
class Tally:
    kills: int = 0  # processes that died of SIGKILL
    kills_in_save: int = 0  # of those, at a save step (an fsync or an atomic replace)
    runs: int = 0
    expected_items: int = 0
    found_items: int = 0
    lost: int = 0
    duplicates: int = 0
    acknowledged_uploads: int = 0
    lost_uploads: int = 0
    index_store_mismatches: int = 0
    lexical_mismatches: int = 0  # items whose lexical entry is missing, or entries of no item
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


# -- the CLI writer ----------------------------------------------------------------------------------
def make_manifest(folder: Path, n: int) -> tuple[Path, int]:
    """n coco_mini photos copied into `folder` with a manifest beside them; (manifest, captions)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows, captions = [], 0
    for line in (COCO / "items.jsonl").read_text().splitlines()[:n]:
        obj = json.loads(line)
        shutil.copy(COCO / obj["image"], images / Path(obj["image"]).name)
        obj["image"] = f"images/{Path(obj['image']).name}"
        captions += len(obj["captions"])
        rows.append(json.dumps(obj))
    manifest = folder / "items.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, captions


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`crossmedia ARGS` in a subprocess, from the checkout, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _index_args(manifest: Path, data_dir: Path) -> list[str]:
    return [
        "index",
        str(manifest),
        "--data-dir",
        str(data_dir),
        "--model",
        "tiny-test",
        "--batch-size",
        "2",
    ]


def _rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("select count(*) from items").fetchone()[0]
    except sqlite3.Error:
        return 0


def _run_killed(args: list[str], data_dir: Path, rng: random.Random, tally: Tally) -> None:
    """One run that dies: at a random save step (fsync or atomic replace), or at a random moment."""
    in_save = rng.random() < 0.5
    kill_at = rng.randint(1, 8) if in_save else 0
    proc = subprocess.Popen(
        [*KILLABLE, str(kill_at), "--", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not in_save:
        target = rng.randint(1, 60)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _rows(data_dir / "catalogue.db") < target:
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=300)
    tally.runs += 1
    if proc.returncode == -signal.SIGKILL:
        tally.kills += 1
        tally.kills_in_save += in_save


def cli_rounds(tmp: Path, rounds: int, kills_per_round: int, seed: int = 0) -> Tally:
    """Each round: a fresh catalogue, `kills_per_round` killed runs, one run to the end; then the
    files as that run left them are checked against the store (no repair allowed)."""
    rng = random.Random(seed)
    tally = Tally()
    manifest, n_captions = make_manifest(tmp / "source", 24)
    for r in range(rounds):
        data_dir = tmp / f"cli-{r}"
        target, tries = tally.kills + kills_per_round, 0
        while tally.kills < target and tries < 3 * kills_per_round:  # a run may finish first
            _run_killed(_index_args(manifest, data_dir), data_dir, rng, tally)
            tries += 1
        done = subprocess.run(
            [*KILLABLE, "0", "--", *_index_args(manifest, data_dir), "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tally.runs += 1
        if done.returncode != 0:
            tally.notes.append(f"round {r}: final run failed: {done.stderr[-500:]}")
            continue
        _check_catalogue(data_dir, {"image": 24, "text": n_captions}, tally, strict_files=True)
    return tally


def _check_catalogue(
    data_dir: Path, want: dict[str, int], tally: Tally, strict_files: bool
) -> None:
    from retrieval.catalogue import Catalogue
    from retrieval.catalogue_check import verify

    with Catalogue.open(data_dir, create=False) as cat:
        counts = cat.counts()
        tally.expected_items += sum(want.values())
        tally.found_items += sum(counts.get(m, 0) for m in want)
        tally.lost += sum(max(0, n - counts.get(m, 0)) for m, n in want.items())
        keys = [r.key for r in cat.store.iter_items()]
        tally.duplicates += (
            len(keys) - len(set(keys)) + sum(max(0, counts.get(m, 0) - n) for m, n in want.items())
        )
        for modality in want:
            store_ids = cat.store.ids(modality)
            if strict_files:  # the files exactly as the finished command left them
                info = cat.files.read_info()["indexes"].get(modality)
                on_disk = cat.files.load_from_disk(modality, cat.space.dim) if info else None
                if on_disk is None or not np.array_equal(on_disk.ids(), store_ids):
                    tally.index_store_mismatches += 1
                    tally.notes.append(f"{data_dir.name}: {modality} file out of step")
            if not np.array_equal(cat.index(modality).ids(), store_ids):
                tally.index_store_mismatches += 1
        if not verify(cat)["ok"]:
            tally.index_store_mismatches += 1
        _check_lexical(cat, tally)


def _check_lexical(cat: object, tally: Tally) -> None:
    """Every item with words has its lexical entry, and no entry outlives its item."""
    from retrieval.store.lexical import body_of

    store = cat.store  # type: ignore[attr-defined]
    fields = store.lexical_fields
    want = sorted(
        r.id
        for r in store.iter_items()
        if body_of(r.modality, r.text, r.path, r.attrs, fields).strip()
    )
    with store.engine.connect() as conn:
        have = store.lexical.ids(conn)
    if have != want:
        tally.lexical_mismatches += len(set(have) ^ set(want))
        tally.notes.append(f"lexical entries differ from the items: {len(set(have) ^ set(want))}")


# -- the server taking uploads ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _png(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _upload(port: int, data: bytes, caption: str) -> dict | None:
    boundary = "----crossmediakill"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="captions"\r\n\r\n{caption}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/items",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read()) if resp.status == 201 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def _start_server(data_dir: Path, port: int, kill_at: int) -> subprocess.Popen:
    args = ["serve", "--data-dir", str(data_dir), "--port", str(port), "--model", "tiny-test"]
    env = dict(os.environ, CROSSMEDIA_RATE_LIMIT_PER_MINUTE="0", CROSSMEDIA_CREATE_CATALOGUE="true")
    proc = subprocess.Popen(
        [*KILLABLE, str(kill_at), "--", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"server did not become ready (exit code {proc.poll()})")


def api_rounds(tmp: Path, kills: int, seed: int = 0) -> Tally:
    """Kill the server `kills` times while two clients upload; every 201 must survive."""
    rng, img_rng = random.Random(seed), np.random.default_rng(seed)
    tally = Tally()
    data_dir = tmp / "api"
    acked: dict[str, int] = {}  # upload key -> id the server acknowledged
    lock = threading.Lock()
    while tally.kills < kills and tally.runs < 3 * kills:
        in_save = rng.random() < 0.5
        port = _free_port()
        proc = _start_server(data_dir, port, rng.randint(1, 6) if in_save else 0)
        stop = threading.Event()
        client = _Client(port, proc, stop, lock, acked, rng, img_rng)
        threads = [threading.Thread(target=client.run) for _ in range(2)]
        for t in threads:
            t.start()
        if not in_save:
            time.sleep(rng.uniform(0.5, 3.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        tally.runs += 1
        if proc.returncode == -signal.SIGKILL:
            tally.kills += 1
            tally.kills_in_save += in_save
    _check_uploads(data_dir, acked, tally)
    return tally


@dataclass
class _Client:
    """Uploads fresh random PNGs until stopped or the server dies; records every 201."""

    port: int
    proc: subprocess.Popen
    stop: threading.Event
    lock: threading.Lock
    acked: dict[str, int]
    rng: random.Random
    img_rng: np.random.Generator

    def run(self) -> None:
        import hashlib

        while not self.stop.is_set() and self.proc.poll() is None:
            with self.lock:
                data = _png(self.img_rng)
                caption = f"caption {self.rng.random():.6f}"
            got = _upload(self.port, data, caption)
            if got is not None:
                with self.lock:
                    self.acked[f"upload:{hashlib.sha256(data).hexdigest()}"] = got["id"]


def _check_uploads(data_dir: Path, acked: dict[str, int], tally: Tally) -> None:
    from retrieval.catalogue import Catalogue

    tally.acknowledged_uploads = len(acked)
    with Catalogue.open(data_dir, create=False) as cat:
        cat.verify_indexes()
        tally.lost_uploads = sum(cat.store.get_by_key(k) is None for k in acked)
        keys = [r.key for r in cat.store.iter_items()]
        tally.duplicates += len(keys) - len(set(keys))
        for modality in ("image", "text"):
            if not np.array_equal(cat.index(modality).ids(), cat.store.ids(modality)):
                tally.index_store_mismatches += 1
