"""Audio through ingestion and search with the real starter audio tower (Whisper tiny.en)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.pipeline import Ingestor
from indexer.sources import open_source
from retrieval.catalogue import Catalogue
from retrieval.media.audio import decode_audio
from retrieval.search import Query, SearchService

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def starter():
    from retrieval.encoders import create_encoder

    return create_encoder("starter")


def _need_data() -> None:
    if not (DATA / "fsdd" / "items.jsonl").is_file():
        pytest.skip(f"real data missing: {DATA} (see ../shared/data/README.md)")


def test_audio_items_get_vectors_transcripts_and_windows(tmp_path: Path, starter) -> None:
    _need_data()
    clips = [DATA / "fsdd" / "audio" / f"{d}_jackson_0.flac" for d in (1, 4, 7)]
    # A 65 s recording: three spoken digits spread over three 30 s windows, silence between.
    rate = 8000
    parts = []
    for clip in clips:
        samples, sr = sf.read(clip, dtype="float32")
        assert sr == rate
        parts += [samples, np.zeros(int(21.5 * rate), np.float32)]
    long_path = tmp_path / "long.wav"
    sf.write(long_path, np.concatenate(parts)[: 65 * rate], rate)
    manifest = tmp_path / "items.jsonl"
    rows = [{"id": f"clip{i}", "audio": str(c), "label": c.name[0]} for i, c in enumerate(clips)]
    rows.append({"id": "long", "audio": str(long_path)})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    with Catalogue.open(tmp_path / "cat") as cat:
        report = Ingestor(cat, starter).ingest(open_source(manifest, [DATA]), progress=False)
        assert report.failed == [] and report.added == {"audio": 4}
        recs = {r.key: r for r in cat.store.iter_items("audio")}
        assert recs["long"].duration == pytest.approx(65.0, abs=0.01)
        segments = cat.store.segments(recs["long"].id, starter.dim)
        assert [round(s[0]) for s in segments] == [0, 30, 60]
        assert all(cat.store.segments(recs[f"clip{i}"].id, starter.dim) == [] for i in range(3))
        # the same file twice gives the identical vector
        again = starter.describe_audio([decode_audio(clips[0])])[0].vector
        stored = cat.store.vectors_for([recs["clip0"].id], starter.dim)[recs["clip0"].id]
        np.testing.assert_array_equal(again, stored)
        # a spoken digit is found by its own recording first, and a long hit names its window
        service = SearchService(cat, starter)
        hits = service.search(Query(audio=decode_audio(clips[1])), target="audio", k=1).hits
        assert hits[0].key == "clip1"
        hits = service.search(Query(text="seven"), target="audio", k=4).hits
        long_hit = next(h for h in hits if h.key == "long")
        assert long_hit.segment is not None and long_hit.segment["offset_s"] in (0.0, 30.0, 60.0)


def test_audio_longer_than_the_limit_is_refused_with_the_setting_named(
    tmp_path: Path, starter
) -> None:
    from retrieval.media.decode import MediaLimits

    path = tmp_path / "hour.wav"
    rate = 8000
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        block = (0.1 * np.sin(np.arange(rate * 60) / 5)).astype(np.float32)
        for _ in range(61):  # 61 minutes, written a minute at a time
            f.write(block)
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(json.dumps({"id": "hour", "audio": str(path)}) + "\n")
    with Catalogue.open(tmp_path / "cat") as cat:
        report = Ingestor(cat, starter, limits=MediaLimits()).ingest(
            open_source(manifest, [DATA]), progress=False
        )
        assert cat.counts() == {}
    [(where, reason)] = report.failed
    assert "max_audio_seconds" in reason or "seconds" in reason, reason
