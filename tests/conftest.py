"""Shared fixtures for the foundation tests: the real data folder (or a clear skip), the
session-scoped "tiny-test" encoder, a small real catalogue of COCO photos, seeded RNG helpers.

Fixture names are specific (`tiny_*`, `shared_data`, `coco_*`) so other test modules can define
their own without clashing.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED_DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
# Test manifests are written in tmp folders and point at the real photos by absolute path; the
# data sets are a media root for every test (and the CLI subprocesses they start).
os.environ.setdefault("CROSSMEDIA_MEDIA_ROOTS", str(SHARED_DATA.resolve()))
N_CATALOGUE = 19  # photos in `tiny_catalogue`: small and odd


def shared_data_path() -> Path:
    """The real data sets (read-only), next to the repository: ../shared/data."""
    return SHARED_DATA.resolve()


def require_shared_data(subset: str | None = None) -> Path:
    """Path of the real data (or one subset of it); skips the calling test when it is missing."""
    root = shared_data_path()
    path = root / subset if subset else root
    if not path.is_dir():
        pytest.skip(f"real data missing: {path} (see ../shared/data/README.md)")
    return path


def seeded_rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """n L2-normalised float32 rows of a seeded Gaussian, (n, dim)."""
    x = seeded_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def coco_entries(n: int, skip: int = 0) -> list[dict[str, Any]]:
    """The first `n` entries of coco_mini/items.jsonl after `skip`, image paths made absolute."""
    coco = require_shared_data("coco_mini")
    lines = (coco / "items.jsonl").read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines[skip : skip + n]:
        obj = json.loads(line)
        obj["image"] = str((coco / obj["image"]).resolve())
        out.append(obj)
    if len(out) < n:
        pytest.skip(f"coco_mini has fewer than {skip + n} items")
    return out


def sqlite_url(data_dir: Path) -> str:
    """The catalogue's own SQLite file, whatever $CROSSMEDIA_DB_URL says."""
    return f"sqlite:///{Path(data_dir).resolve() / 'catalogue.db'}"


def write_manifest(path: Path, rows: list[dict[str, Any] | str]) -> Path:
    """items.jsonl from objects (or raw lines, to write broken ones)."""
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


N_GOOD = 15  # good photos in the ingestion scenario
CAPTIONS = 5  # per COCO photo


def build_scenario(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A manifest of N_GOOD real photos plus a corrupt image, a truncated JPEG, a missing file and
    a line of broken JSON (lines 16..19)."""
    good = coco_entries(N_GOOD)
    spare = coco_entries(1, skip=N_GOOD)[0]
    (root / "corrupt.jpg").write_bytes(seeded_rng(5).bytes(3001))
    data = Path(spare["image"]).read_bytes()
    (root / "trunc.jpg").write_bytes(data[: len(data) // 2])
    rows: list[dict[str, Any] | str] = list(good)
    rows += [
        {"id": "corrupt", "image": "corrupt.jpg", "captions": ["noise"]},
        {"id": "trunc", "image": "trunc.jpg", "captions": ["half a photo"]},
        {"id": "missing", "image": "missing.jpg", "captions": ["never there"]},
        '{"id": "broken", "image": ',
    ]
    return write_manifest(root / "items.jsonl", rows), good


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data()


class OneThreadEncoder:
    """Runs every call of the wrapped encoder on one torch thread, then restores the setting.

    The tiny model's matrices are far too small for intra-op threads to pay: on a busy 2-core
    machine two threads made each batch ~30x slower than one. Scoped to the calls, so other
    tests in the session keep the process-wide setting.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return attr(*args, **kwargs)
            finally:
                torch.set_num_threads(before)

        return call


@pytest.fixture(scope="session")
def tiny_encoder():  # noqa: ANN201 - an Encoder
    from retrieval.encoders import create_encoder

    return OneThreadEncoder(create_encoder("tiny-test", device="cpu"))


@pytest.fixture(scope="session")
def tiny_catalogue_template(
    tmp_path_factory: pytest.TempPathFactory, tiny_encoder
) -> tuple[Path, list[dict[str, Any]]]:
    """A data dir with N_CATALOGUE real COCO photos (+ captions) ingested; never opened for writing
    by tests (they get a copy through `tiny_catalogue`)."""
    from indexer.pipeline import Ingestor
    from indexer.sources import ManifestSource
    from retrieval.catalogue import Catalogue

    entries = coco_entries(N_CATALOGUE)
    root = tmp_path_factory.mktemp("tiny_catalogue")
    manifest = write_manifest(root / "items.jsonl", entries)
    data_dir = root / "data"
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir)) as cat:
        report = Ingestor(cat, tiny_encoder, batch_size=8).ingest(
            ManifestSource(manifest, [SHARED_DATA]), progress=False
        )
    assert not report.failed, report.failed
    return data_dir, entries


@pytest.fixture
def tiny_catalogue(tmp_path: Path, tiny_catalogue_template) -> Iterator[Any]:
    """A fresh, writable copy of the template catalogue, opened; `.entries` lists its sources."""
    from retrieval.catalogue import Catalogue

    template, entries = tiny_catalogue_template
    data_dir = tmp_path / "data"
    shutil.copytree(template, data_dir)
    cat = Catalogue.open(data_dir, db_url=sqlite_url(data_dir))
    cat.entries = entries  # type: ignore[attr-defined]
    try:
        yield cat
    finally:
        cat.close()


def pg_url_or_skip() -> str:
    url = os.environ.get("CROSSMEDIA_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(
            "CI=true but CROSSMEDIA_TEST_PG_URL is not set: the PostgreSQL tests "
            "must run in CI (see .ci/run)."
        )
    pytest.skip(
        "PostgreSQL tests need CROSSMEDIA_TEST_PG_URL, e.g. "
        "postgresql+psycopg://crossmedia:crossmedia@127.0.0.1/crossmedia_test"
    )


@pytest.fixture(scope="session")
def store_pg_database() -> Iterator[str]:
    """A uniquely named database for this run, dropped afterwards; falls back to the given
    database (tables dropped per test) when the role may not create databases."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(pg_url_or_skip())
    name = f"crossmedia_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - no CREATEDB privilege: use the given database
        admin.dispose()
        if "permission denied" not in str(exc).lower():
            raise
        yield base.render_as_string(hide_password=False)
        return
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_fresh_url(store_pg_database: str) -> str:
    """The run's PostgreSQL database with every catalogue table dropped: a fresh schema."""
    from sqlalchemy import create_engine, text

    from retrieval.store.models import Base

    engine = create_engine(store_pg_database)
    with engine.begin() as conn:  # the lexical table is created by hand (not in the metadata)
        conn.execute(text("DROP TABLE IF EXISTS lexical CASCADE"))
    Base.metadata.drop_all(engine)
    engine.dispose()
    return store_pg_database
