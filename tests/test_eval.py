"""`crossmedia eval` (issue 17): the live catalogue's own recall agrees with `crossmedia bench
recall --mode vector` on the same items; drift against the re-ranker's training bank; the last
result is kept for `/metrics` and the page."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED_DATA, coco_entries, require_shared_data, write_manifest

from retrieval.drift import drift_report, nearest_cosines
from retrieval.errors import CrossmediaError
from retrieval.live_eval import load_last_eval, run_eval, save_last_eval
from retrieval.search import SearchService


def _bench(manifest: Path, model: str, monkeypatch: pytest.MonkeyPatch, enc: Any, **kw: Any) -> Any:
    import indexer.bench_recall as bench

    monkeypatch.setattr(bench, "create_encoder", lambda name: enc)
    return bench.run_recall_bench(manifest, model=model, mode="vector", progress=False, **kw)


def test_eval_of_every_item_equals_bench_recall(
    tiny_catalogue: Any, tiny_encoder: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All media sampled: the same queries, gallery and relevance as the bench, so the same
    numbers (the same stored vectors answer both)."""
    live = run_eval(tiny_catalogue, SearchService(tiny_catalogue, tiny_encoder), sample=1000)
    manifest = write_manifest(tmp_path / "items.jsonl", tiny_catalogue.entries)
    bench = _bench(manifest, "tiny-test", monkeypatch, tiny_encoder)["tasks"]["text_to_image"]
    row = live["tasks"]["text_to_image"]
    assert row["gallery"] == bench["gallery"] == len(tiny_catalogue.entries)
    assert row["queries"] == bench["queries"]
    for k in ("R@1", "R@5", "R@10", "mAP@10"):
        assert row["first_stage"][k] == pytest.approx(bench[k], abs=1e-9), k
    assert row["chance_R@10"] == pytest.approx(bench["chance_R@10"])
    assert "reranked" not in row  # tiny-test ships no re-ranker
    assert live["drift"]["image"]["available"] is False


def test_eval_needs_captioned_media_and_a_sane_sample(
    tiny_catalogue: Any, tiny_encoder: Any
) -> None:
    service = SearchService(tiny_catalogue, tiny_encoder)
    with pytest.raises(CrossmediaError, match="at least 1"):
        run_eval(tiny_catalogue, service, sample=0)
    ids = [int(i) for i in tiny_catalogue.store.ids("text")]
    tiny_catalogue.delete_ids(ids)
    with pytest.raises(CrossmediaError, match="captions"):
        run_eval(tiny_catalogue, service, sample=5)


def test_last_eval_is_kept_and_a_broken_copy_says_so(tmp_path: Path) -> None:
    assert load_last_eval(tmp_path) is None
    save_last_eval(tmp_path, {"tasks": {}, "at": "now"})
    assert load_last_eval(tmp_path) == {"tasks": {}, "at": "now"}
    (tmp_path / "last_eval.json").write_text("{not json")
    assert "crossmedia eval" in (load_last_eval(tmp_path) or {})["error"]


def test_drift_is_near_five_percent_in_distribution_and_warns_far_away() -> None:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((11, 32)).astype(np.float32)

    def sample(n: int, shift: float = 0.0) -> np.ndarray:
        x = centres[rng.integers(0, 11, n)] + 0.6 * rng.standard_normal((n, 32)) + shift
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    bank = type("Bank", (), {"vectors": {"image": sample(600)}})()
    reranker = type("R", (), {"bank": bank})()
    near = drift_report(reranker, "image", sample(300))
    assert near["available"] and 0.0 <= near["far_share"] <= 0.15 and not near["warning"]
    far = drift_report(reranker, "image", sample(300, shift=3.0))
    assert far["warning"] and far["far_share"] > 0.5 and far["note"].startswith("Warning")
    loo = nearest_cosines(bank.vectors["image"], bank.vectors["image"], leave_one_out=True)
    assert float(loo.max()) < 0.9999  # its own row was left out


@pytest.mark.slow
def test_eval_on_coco_mini_agrees_with_bench_recall_within_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The starter model and its re-ranker on all of coco_mini: a sample of half the photos
    agrees with `bench recall --mode vector` on the whole set within sampling noise (3 SE)."""
    from indexer.pipeline import Ingestor
    from indexer.sources import ManifestSource
    from retrieval.catalogue import Catalogue
    from retrieval.encoders import create_encoder
    from retrieval.rerank import select_reranker

    coco = require_shared_data("coco_mini")
    enc = create_encoder("starter")
    n = len(coco_entries(239))
    with Catalogue.open(tmp_path / "data") as cat:
        Ingestor(cat, enc).ingest(
            ManifestSource(coco / "items.jsonl", [SHARED_DATA]), progress=False
        )
        service = SearchService(cat, enc, reranker=select_reranker("auto", enc))
        live = run_eval(cat, service, sample=n // 2, seed=3)["tasks"]["text_to_image"]
    assert live["gallery"] == n and live["sampled_media"] == n // 2
    for rerank, stage in ((False, "first_stage"), (True, "reranked")):
        bench = _bench(coco / "items.jsonl", "starter", monkeypatch, enc, rerank=rerank)
        ref = bench["tasks"]["text_to_image"]
        for k in ("R@1", "R@10"):
            p = ref[k]
            se = math.sqrt(max(p * (1 - p), 0.01) / live["queries"])
            assert abs(live[stage][k] - p) <= 3 * se + 0.01, (stage, k, live[stage][k], p)
    json.dumps(live)  # JSON-ready for --json and the page


def test_eval_command_prints_a_table_and_keeps_the_result(
    tiny_catalogue: Any, tiny_encoder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import retrieval.encoders as encoders
    from api.cli import app

    monkeypatch.setattr(encoders, "create_encoder", lambda name, device=None: tiny_encoder)
    data_dir = str(tiny_catalogue.data_dir)
    out = CliRunner().invoke(app, ["eval", "--data-dir", data_dir, "--sample", "7"])
    assert out.exit_code == 0, (out.output, out.exception)
    assert "| text_to_image | first stage |" in out.stdout and "Drift (image)" in out.stdout
    kept = load_last_eval(tiny_catalogue.data_dir)
    assert kept is not None and kept["tasks"]["text_to_image"]["sampled_media"] == 7
    assert kept["at"].endswith("Z")
    bad = CliRunner().invoke(app, ["eval", "--data-dir", data_dir, "--sample", "0"])
    assert bad.exit_code != 0 and "--sample" in bad.output


def test_drift_of_a_model_without_reranker_reads_the_bank_beside_its_heads() -> None:
    """starter-v2 ships no re-ranker: drift comes from the bank shipped beside its heads
    (indexer/drift_bank.py), and its own training vectors sit at the in-distribution share."""
    from retrieval.drift import training_bank

    bank = training_bank(None, "starter-heads-v2")
    assert set(bank) == {"image", "text"} and all(len(v) == 1500 for v in bank.values())
    report = drift_report(None, "image", bank["image"][:300], "starter-heads-v2")
    assert report["available"] and report["far_share"] <= 0.1
    assert not drift_report(None, "image", bank["image"], "starter-heads-v9")["available"]
