"""Ingestion on a real local Ray cluster (2 CPUs, shared by the module) against the local
pipeline: the same catalogue (keys, rows, links, skipped files, vectors to 1e-5, search results),
and every item exactly once after a killed embed worker and after a killed driver.

Also, without Ray: `index` without --ray never imports Ray, and --ray without the extra names
the install command.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED_DATA, coco_entries, sqlite_url, write_manifest

ROOT = Path(__file__).resolve().parents[1]
BATCH = 2  # small blocks: many in flight, so a kill lands mid-run


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but Ray is not installed: scripts/setup_env.sh installs .[ray]")
        pytest.skip("Ray is not installed: pip install -e '.[ray]'")
    return ray


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """A local Ray cluster with 2 CPUs; this process is one of its drivers."""
    ray = _require_ray()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _manifest(root: Path, n: int) -> tuple[Path, int]:
    """`n` real COCO photos with their captions, a missing file, a broken line and a repeated
    id: (path, entries)."""
    rows: list[dict[str, Any] | str] = list(coco_entries(n))
    rows.insert(3, {"id": "missing", "image": "missing.jpg", "captions": ["never there"]})
    rows.insert(6, '{"id": "broken", ')
    rows.append(dict(rows[0]))
    return write_manifest(root / "items.jsonl", rows), len(rows)


def _local(manifest: Path, data_dir: Path, encoder: Any) -> dict[str, Any]:
    from indexer.pipeline import Ingestor
    from indexer.sources import ManifestSource
    from retrieval.catalogue import Catalogue

    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir)) as cat:
        report = Ingestor(cat, encoder, batch_size=BATCH).ingest(
            ManifestSource(manifest, [SHARED_DATA]), progress=False
        )
    return report.to_json()


def _on_ray(manifest: Path, data_dir: Path, workers: int = 2, during: Any = None) -> Any:
    """Index on the module's cluster: (report, None). With `during`, that runs beside the
    ingestion, then the same source is indexed again by the same actors: (report, (what
    `during` returned, the actors' pids after it, the second run's report))."""
    from indexer.ray_cluster import RayOptions
    from indexer.ray_ingest import RayIngestor
    from indexer.sources import ManifestSource
    from retrieval.catalogue import Catalogue

    with (
        Catalogue.open(data_dir, db_url=sqlite_url(data_dir)) as cat,
        RayIngestor(cat, "tiny-test", RayOptions(workers=workers), batch_size=BATCH) as ri,
    ):
        source = ManifestSource(manifest, [SHARED_DATA])
        if during is None:
            return ri.ingest(source, progress=False).to_json(), None
        out: dict[str, Any] = {}
        run = threading.Thread(target=lambda: out.update(ri.ingest(source, False).to_json()))
        run.start()
        seen = during(ri)
        run.join(timeout=300)
        assert not run.is_alive() and out, "the run did not finish after the kill"
        new_pids = [p for _, p in ri.ray.get([a.describe.remote() for a in ri.pool.actors])]
        return out, (seen, new_pids, ri.ingest(source, progress=False).to_json())


def _snapshot(data_dir: Path) -> dict[str, Any]:
    """Everything a catalogue holds, by key: rows, vectors, links, skipped entries."""
    from retrieval.catalogue import Catalogue

    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir), create=False) as cat:
        recs = list(cat.store.iter_items())
        dim = cat.space.dim  # type: ignore[union-attr]
        vecs = cat.store.vectors_for([r.id for r in recs], dim)
        errors = sorted(cat.store.errors(1000))
    with sqlite3.connect(data_dir / "catalogue.db") as db:
        links = db.execute(
            "SELECT m.key, t.key, l.kind FROM links l JOIN items m ON m.id = l.media_id "
            "JOIN items t ON t.id = l.text_id"
        ).fetchall()
    rows = {
        r.key: (r.modality, r.content_hash, r.path, r.text, r.attrs, r.width, r.height)
        for r in recs
    }
    assert len(rows) == len(recs), "a key is stored twice"
    return {
        "rows": rows,
        "vectors": {r.key: vecs[r.id] for r in recs},
        "links": sorted(links),
        "errors": errors,
    }


def _assert_same_catalogue(a: Path, b: Path) -> None:
    sa, sb = _snapshot(a), _snapshot(b)
    assert sa["rows"] == sb["rows"]
    assert sa["links"] == sb["links"] and sa["errors"] == sb["errors"]
    for key, v in sa["vectors"].items():
        np.testing.assert_allclose(sb["vectors"][key], v, atol=1e-5, err_msg=key)


def _items(data_dir: Path) -> int:
    """Rows committed so far (0 before the first commit), read beside the writer."""
    try:
        with sqlite3.connect(f"file:{data_dir / 'catalogue.db'}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM items").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def _wait_for_rows(data_dir: Path, driver: Any = None, log: Path | None = None) -> int:
    """The rows committed, once there are some; fails if the `driver` process ends first."""
    deadline = time.monotonic() + 240.0
    while (n := _items(data_dir)) == 0:
        if driver is not None and driver.poll() is not None:
            pytest.fail(f"the driver exited: {log.read_text() if log else ''}")
        assert time.monotonic() < deadline, "nothing was committed"
        time.sleep(0.02)
    return n


@pytest.mark.ray
def test_ray_builds_the_local_catalogue(ray_cluster: str, tmp_path: Path, tiny_encoder) -> None:
    from retrieval.catalogue import Catalogue
    from retrieval.media.image import decode_image
    from retrieval.search import Query, SearchService

    manifest, entries = _manifest(tmp_path, 11)
    local = _local(manifest, tmp_path / "local", tiny_encoder)
    on_ray, _ = _on_ray(manifest, tmp_path / "ray")
    local.pop("seconds"), on_ray.pop("seconds")
    assert on_ray == local  # the same report: counts, and each skipped entry with its reason
    assert on_ray["entries"] == entries and on_ray["added"] == {"image": 11, "text": 55}
    assert [f["where"] for f in on_ray["failed"]] == [
        "items.jsonl:4",
        "items.jsonl:7",
        "items.jsonl:14",
    ]
    _assert_same_catalogue(tmp_path / "local", tmp_path / "ray")

    photo = decode_image(Path(coco_entries(1, skip=5)[0]["image"]))
    queries = [
        (Query(text="a man riding a horse"), "image", "vector"),
        (Query(text="a plate of food on a table"), "any", "hybrid"),
        (Query(image=photo), "text", "vector"),
    ]
    found = []
    for d in ("local", "ray"):
        with Catalogue.open(tmp_path / d, db_url=sqlite_url(tmp_path / d), create=False) as cat:
            service = SearchService(cat, tiny_encoder)
            found.append(
                [
                    [
                        (h.key, round(h.score, 5))
                        for h in service.search(q, target=t, k=7, mode=m).hits
                    ]
                    for q, t, m in queries
                ]
            )
    assert found[0] == found[1] and all(len(hits) == 7 for hits in found[0])


@pytest.mark.ray
def test_killed_embed_worker_every_item_once(
    ray_cluster: str, tmp_path: Path, tiny_encoder
) -> None:
    manifest, _ = _manifest(tmp_path, 23)
    _local(manifest, tmp_path / "local", tiny_encoder)
    total = 23 * 6  # each photo and its five captions

    def kill_an_actor(ri: Any) -> tuple[int, int]:
        rows = _wait_for_rows(tmp_path / "ray")
        os.kill(ri.pool.pids[0], signal.SIGKILL)
        return rows, ri.pool.pids[0]

    report, ((rows_at_kill, killed), pids_after, again) = _on_ray(
        manifest, tmp_path / "ray", during=kill_an_actor
    )
    assert rows_at_kill < total, "the run ended before the kill: index more entries"
    assert killed not in pids_after  # Ray restarted the actor and retried its calls
    assert sum(report["added"].values()) == total
    assert again["added"] == {} and again["unchanged"] == total  # a re-run adds nothing
    _assert_same_catalogue(tmp_path / "local", tmp_path / "ray")


@pytest.mark.ray
def test_killed_driver_then_rerun_every_item_once(
    ray_cluster: str, tmp_path: Path, tiny_encoder
) -> None:
    from retrieval.catalogue import Catalogue
    from retrieval.catalogue_check import verify

    manifest, _ = _manifest(tmp_path, 23)
    _local(manifest, tmp_path / "local", tiny_encoder)
    total, data = 23 * 6, tmp_path / "ray"
    args = [sys.executable, "-m", "api.cli", "index", str(manifest), "--data-dir", str(data)]
    args += ["--model", "tiny-test", "--batch-size", str(BATCH), "--json", "--ray", ray_cluster]
    env = {k: v for k, v in os.environ.items() if k != "CROSSMEDIA_DB_URL"}
    log = tmp_path / "driver.log"
    with open(log, "w") as err:
        driver = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            _wait_for_rows(data, driver, log)
        finally:
            driver.kill()  # SIGKILL: no clean-up of any kind
            driver.wait(timeout=60)
    rows_at_kill = _items(data)
    assert 0 < rows_at_kill < total, "the run ended before the kill: index more entries"

    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert sum(report["added"].values()) == total - rows_at_kill  # only what was missing
    _assert_same_catalogue(tmp_path / "local", data)
    with Catalogue.open(data, db_url=sqlite_url(data), create=False) as cat:
        assert verify(cat)["ok"]


def _cli_code(tmp_path: Path, *extra: str) -> str:
    manifest = write_manifest(tmp_path / "items.jsonl", coco_entries(3))
    argv = ["crossmedia", "index", str(manifest), "--data-dir", str(tmp_path / "d")]
    return f"sys.argv = {argv + ['--model', 'tiny-test', *extra]!r}\n"


def test_index_without_ray_never_imports_ray(tmp_path: Path) -> None:
    code = "import sys\n" + _cli_code(tmp_path, "--json")
    code += "from api.cli import main\ntry:\n    main()\nfinally:\n"
    code += "    print('ray imported:', 'ray' in sys.modules, file=sys.stderr)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["added"] == {"image": 3, "text": 15}
    assert "ray imported: False" in out.stderr


def test_ray_without_the_extra_names_the_install_command(tmp_path: Path) -> None:
    code = "import sys\nsys.modules['ray'] = None  # as if not installed\n"
    code += _cli_code(tmp_path, "--ray", "local") + "from api.cli import main\nmain()\n"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2, out.stderr
    assert "pip install -e '.[ray]'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.ray
def test_unknown_model_on_ray_says_which_exist(ray_cluster: str, tmp_path: Path) -> None:
    from indexer.ray_ingest import RayIngestor
    from retrieval.catalogue import Catalogue
    from retrieval.errors import UnknownModelError

    with Catalogue.open(tmp_path / "d", db_url=sqlite_url(tmp_path / "d")) as cat:
        with pytest.raises(UnknownModelError, match="Available: .*tiny-test"):
            RayIngestor(cat, "no-such-model").start()
