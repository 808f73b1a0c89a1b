"""Transcript fusion rule and the text<->audio scoring helper (fast, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.align_audio.eval import both_directions, text_gallery
from retrieval.encoders.audio_starter import FusionConfig, fuse, normalize_transcript
from retrieval.encoders.audio_whisper import Transcript
from retrieval.encoders.base import l2_normalize


def test_speech_gate() -> None:
    cfg = FusionConfig(transcript_weight=0.7, max_no_speech_prob=0.5, min_avg_logprob=-1.0)
    assert cfg.is_speech(Transcript("seven", 0.1, -0.4))
    assert not cfg.is_speech(Transcript("seven", 0.6, -0.4))  # Whisper thinks: no speech
    assert not cfg.is_speech(Transcript("Thank you.", 0.1, -1.7))  # not confident
    assert not cfg.is_speech(Transcript(" ... ", 0.0, -0.1))  # nothing searchable
    assert not cfg.is_speech(Transcript("A" + "H" * 60, 0.1, -0.3))  # a decoding loop


def test_fuse_only_where_speech() -> None:
    rng = np.random.default_rng(11)
    acoustic, spoken = (
        l2_normalize(rng.standard_normal((7, 5))),
        l2_normalize(rng.standard_normal((7, 5))),
    )
    weights = np.array([0.75, 0, 0.75, 0, 0, 1.0, 0])
    speech = weights > 0
    out = fuse(acoustic, spoken, weights)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(out[~speech], acoustic[~speech].astype(np.float32))
    expected = l2_normalize(0.25 * acoustic[[0, 2]] + 0.75 * spoken[[0, 2]])
    assert np.allclose(out[[0, 2]], expected, atol=1e-6)
    assert np.allclose(out[5], spoken[5], atol=1e-6)


def test_weight_by_transcript_length_and_digit_spelling() -> None:
    cfg = FusionConfig(transcript_weight=0.25, phrase_weight=0.9, max_no_speech_prob=0.5)
    assert cfg.weight(Transcript("Seven.", 0.1, -0.4)) == 0.25
    assert cfg.weight(Transcript("the cat sat", 0.1, -0.4)) == 0.9
    assert cfg.weight(Transcript("the cat sat", 0.9, -0.4)) == 0.0
    assert normalize_transcript(" 7 3, 0 0.") == "seven three, zero zero."
    assert normalize_transcript("in 2024 at 3.5 km") == "in 2024 at 3.5 km"


def test_text_gallery_dedupes_and_scores() -> None:
    texts, index = text_gallery(["a dog", "a cat", "a dog", "a bird"])
    assert texts == ["a dog", "a cat", "a bird"] and index.tolist() == [0, 1, 0, 2]
    text_vecs = np.eye(3, dtype=np.float32)
    audio = text_vecs[[0, 1, 0, 1]]  # the last clip (a bird) looks like a cat
    r = both_directions(audio, text_vecs, index)
    assert r["audio_to_text"]["R@1"] == pytest.approx(0.75)
    assert r["audio_to_text"]["gallery"] == 3 and r["text_to_audio"]["gallery"] == 4
    assert r["text_to_audio"]["R@1"] == pytest.approx(2 / 3)


def test_weight_by_whisper_confidence_whatever_the_length() -> None:
    """split="logprob": the phrase weight goes to transcripts Whisper is sure of (average
    log-probability), one word or many; the gates still come first."""
    cfg = FusionConfig(0.25, 0.9, 0.5, -1.0, split="logprob", sure_logprob=-0.3)
    assert cfg.weight(Transcript("seven", 0.1, -0.1)) == 0.9
    assert cfg.weight(Transcript("a dog barks at the mailman", 0.1, -0.6)) == 0.25
    assert cfg.weight(Transcript("a dog barks", 0.1, -1.5)) == 0.0  # below the log-prob gate
    assert cfg.weight(Transcript("seven", 0.8, -0.1)) == 0.0  # probably not speech
    words = FusionConfig(0.25, 0.9, 0.5, -1.0)  # the default rule: word count
    assert words.weight(Transcript("seven", 0.1, -0.1)) == 0.25
