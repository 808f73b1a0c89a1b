"""Transcript fusion rule and the text<->audio scoring helper (fast, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.align.audio_eval import both_directions, text_gallery
from retrieval.encoders.audio_starter import FusionConfig, fuse
from retrieval.encoders.audio_whisper import Transcript
from retrieval.encoders.base import l2_normalize


def test_speech_gate() -> None:
    cfg = FusionConfig(transcript_weight=0.7, max_no_speech_prob=0.5, min_avg_logprob=-1.0)
    assert cfg.is_speech(Transcript("seven", 0.1, -0.4))
    assert not cfg.is_speech(Transcript("seven", 0.6, -0.4))  # Whisper thinks: no speech
    assert not cfg.is_speech(Transcript("Thank you.", 0.1, -1.7))  # not confident
    assert not cfg.is_speech(Transcript(" ... ", 0.0, -0.1))  # nothing searchable


def test_fuse_only_where_speech() -> None:
    rng = np.random.default_rng(11)
    acoustic, spoken = l2_normalize(rng.standard_normal((7, 5))), l2_normalize(rng.standard_normal((7, 5)))
    speech = np.array([True, False, True, False, False, True, False])
    out = fuse(acoustic, spoken, speech, 0.75)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(out[~speech], acoustic[~speech].astype(np.float32))
    expected = l2_normalize(0.25 * acoustic[speech] + 0.75 * spoken[speech])
    assert np.allclose(out[speech], expected, atol=1e-6)
    assert np.allclose(fuse(acoustic, spoken, speech, 1.0)[speech], spoken[speech], atol=1e-6)


def test_text_gallery_dedupes_and_scores() -> None:
    texts, index = text_gallery(["a dog", "a cat", "a dog", "a bird"])
    assert texts == ["a dog", "a cat", "a bird"] and index.tolist() == [0, 1, 0, 2]
    text_vecs = np.eye(3, dtype=np.float32)
    audio = text_vecs[[0, 1, 0, 1]]  # the last clip (a bird) looks like a cat
    r = both_directions(audio, text_vecs, index)
    assert r["audio_to_text"]["R@1"] == pytest.approx(0.75)
    assert r["audio_to_text"]["gallery"] == 3 and r["text_to_audio"]["gallery"] == 4
    assert r["text_to_audio"]["R@1"] == pytest.approx(2 / 3)
