"""A server moves an outgrown index to its new type in the background (api/index_upkeep.py):
searches and uploads go on with the old index while the new one is built, and the rows written
meanwhile are in it once it is installed."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_support import COCO, build_engine, coco_entries, needs_coco

import retrieval.index_choice as index_choice
from indexer.uploads import commit_upload, prepare_upload
from retrieval.catalogue import Catalogue
from retrieval.index_files import IndexFiles
from retrieval.results import Query

pytestmark = needs_coco
GROWN = 9  # image vectors from which the test's rule wants an IVF index


def _upload(engine: Any, entry: dict[str, Any]) -> int:
    data = (COCO / entry["image"]).read_bytes()
    prepared = prepare_upload(engine.ingestor, data, Path(entry["image"]).name)
    with engine.writing(5):
        return commit_upload(engine.ingestor, prepared).id


def test_upkeep_builds_aside_and_installs_with_the_writes_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = build_engine(tmp_path / "data", n=7, n_audio=0)
    monkeypatch.setattr(
        IndexFiles,
        "wanted_factory",
        lambda self, m, count=None: (
            "IVF2,Flat" if m == "image" and (count or 0) >= GROWN else "Flat"
        ),
    )
    started, release = threading.Event(), threading.Event()
    real_build = index_choice.build_for

    def gated_build(cat: Catalogue, modality: str, factory: str) -> Any:
        built = real_build(cat, modality, factory)  # a snapshot of the store as it is now
        started.set()
        assert release.wait(60)
        return built

    monkeypatch.setattr(index_choice, "build_for", gated_build)
    more = coco_entries(12)[7:]
    try:
        _upload(engine, more[0])
        assert not engine.upkeep.busy  # 8 images: the index type still fits
        _upload(engine, more[1])  # 9: the rebuild starts in the background
        assert started.wait(60) and engine.upkeep.busy
        old = engine.catalogue.index("image")
        assert old.factory == "Flat"
        hits = engine.search.search(Query(text="a dog"), target="image", k=5, rerank=False).hits
        assert hits  # searches are served by the old index meanwhile
        late = _upload(engine, more[2])  # and uploads are not held off either
        assert engine.catalogue.index("image") is old and late in old.ids()
    finally:
        release.set()
        engine.upkeep.wait(60)
    index = engine.catalogue.index("image")
    assert index.factory == "IVF2,Flat" and engine.upkeep.last["image"] == "moved to IVF2,Flat"
    np.testing.assert_array_equal(index.ids(), engine.catalogue.store.ids("image"))
    assert late in index.ids()  # caught up with the upload made during the build
    info = json.loads((tmp_path / "data" / "index_info.json").read_text())["indexes"]["image"]
    assert info["factory"] == "IVF2,Flat" and info["search"]["recall_at_10"] >= 0.95
    data_dir = engine.catalogue.data_dir
    engine.close()
    with Catalogue.open(data_dir, create=False) as cat:
        np.testing.assert_array_equal(cat.index("image").ids(), cat.store.ids("image"))
        assert cat.index("image").factory == "IVF2,Flat" and cat.repairs == []
