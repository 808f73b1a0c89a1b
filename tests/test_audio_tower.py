"""Whisper audio tower: log-mel recipe (against an independent numpy oracle), frames, tokens,
determinism, transcription of real spoken digits, the head artifact and the window contract."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.encoders.audio_head import (
    AudioHead,
    AudioHeadArtifact,
    AudioHeadConfig,
    load_audio_head,
    save_audio_head,
)
from retrieval.encoders.audio_whisper import pool_tokens
from retrieval.media.audio import Audio, decode_audio

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="../shared/data is missing (real spoken digits for transcription)"
)


def noise(seconds: float, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    return Audio((0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)


def slaney_mel_oracle(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """Whisper's recipe in plain numpy (Slaney scale and norm, as librosa.filters.mel)."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64)
        lin = f / (200.0 / 3)
        return np.where(
            f >= 1000, 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27), lin
        )

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= 15, 1000 * np.exp((np.log(6.4) / 27) * (m - 15)), m * 200.0 / 3)

    x = np.zeros(n_frames * 160, np.float64)
    x[: min(len(samples), len(x))] = samples[: len(x)]
    x = np.pad(x, 200, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    frames = np.stack([x[i * 160 : i * 160 + 400] * window for i in range(n_frames)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T, 201)
    freqs = np.linspace(0, 8000, 201)
    pts = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), 82))
    fb = np.zeros((80, 201))
    for m in range(80):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        fb[m] = np.maximum(0, np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)))
        fb[m] *= 2.0 / (hi - lo)
    logs = np.log10(np.maximum(fb @ power.T, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return (logs + 4.0) / 4.0


def test_pool_tokens_shapes_and_short_inputs() -> None:
    frames = np.arange(11 * 3, dtype=np.float32).reshape(11, 3)
    tokens = pool_tokens(frames, 4)
    assert tokens.shape == (4, 3)
    assert np.allclose(tokens[0], frames[0:3].mean(0))
    assert pool_tokens(frames[:2], 8).shape == (8, 3)  # fewer frames than tokens: repeats


def test_head_normalised_and_artifact_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    head = AudioHead(AudioHeadConfig(in_dim=17, n_tokens=7, hidden=11, out_dim=13)).eval()
    x = torch.randn(5, 7, 17)
    y = head(x)
    assert y.shape == (5, 13) and torch.allclose(y.norm(dim=-1), torch.ones(5), atol=1e-5)
    art = AudioHeadArtifact(
        head, "space|v|13", "test-v0", {"n_tokens": 7}, {"transcript_weight": 0.5}, {"seed": 0}
    )
    save_audio_head(art, tmp_path / "h.safetensors")
    back = load_audio_head(tmp_path / "h.safetensors")
    assert back.space_key == "space|v|13" and back.fusion == {"transcript_weight": 0.5}
    assert torch.equal(back.head(x), y)


def test_missing_head_names_fix(tmp_path: Path) -> None:
    from retrieval.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="crossmedia align-audio"):
        load_audio_head(tmp_path / "none.safetensors")


@pytest.fixture(scope="session")
def tower():
    from retrieval.encoders.audio_whisper import WhisperAudioTower

    return WhisperAudioTower()


@pytest.mark.slow
def test_log_mel_matches_oracle(tower) -> None:
    clip = noise(1.7, seed=3).samples * np.linspace(0, 1, int(1.7 * 16000), dtype=np.float32)
    ours = tower.log_mel(clip, 300)
    assert ours.shape == (80, 300)
    assert np.abs(ours - slaney_mel_oracle(clip, 300)).max() < 2e-3


@pytest.mark.slow
def test_frames_cover_real_audio_only(tower) -> None:
    clips = [noise(0.5), noise(2.3, 1), noise(30.0, 2)]
    frames = tower.frames(clips)
    assert [f.shape for f in frames] == [(25, 384), (115, 384), (1500, 384)]
    assert tower.token_features(clips).shape == (3, 8, 384)
    with pytest.raises(ValueError, match="split_windows"):
        tower.frames([noise(31.0)])
    with pytest.raises(ValueError, match="16 kHz"):
        tower.frames([Audio(np.zeros(8000, np.float32), 8000)])


@pytest.mark.slow
def test_deterministic_across_calls_and_batches(tower) -> None:
    a, b = noise(1.1, 5), noise(1.9, 6)
    first = tower.token_features([a])
    assert np.array_equal(first, tower.token_features([a]))
    assert np.array_equal(first[0], tower.token_features([b, a])[1])


@needs_data
@pytest.mark.slow
def test_transcribes_spoken_digits(tower) -> None:
    words = {"one": "1", "five": "5", "six": "6", "seven": "7", "nine": "9"}
    digit = {"one": 1, "five": 5, "six": 6, "seven": 7, "nine": 9}
    clips = [decode_audio(DATA / "fsdd" / "audio" / f"{digit[w]}_george_0.flac") for w in words]
    texts = [t.lower().strip(" .!?") for t in tower.transcribe(clips)]
    correct = sum(t in (w, d) for t, (w, d) in zip(texts, words.items(), strict=True))
    assert correct >= 4, texts


@needs_data
@pytest.mark.slow
def test_same_file_twice_same_vector(tower) -> None:
    from retrieval.encoders.audio_starter import StarterAudioTower

    torch.manual_seed(0)
    head = AudioHead(AudioHeadConfig(out_dim=16)).eval()
    st = StarterAudioTower(tower, AudioHeadArtifact(head, "x|y|16", "t"))
    path = DATA / "animal_sounds" / "audio" / "lion" / "aslan_1.flac"
    one = st.encode_audio([decode_audio(path)])
    two = st.encode_audio([decode_audio(path.read_bytes())])
    assert one.shape == (1, 16) and np.array_equal(one, two)


@pytest.mark.slow
def test_long_clip_window_contract(tower) -> None:
    from retrieval.encoders.audio_starter import StarterAudioTower

    torch.manual_seed(0)
    head = AudioHead(AudioHeadConfig(out_dim=16)).eval()
    st = StarterAudioTower(tower, AudioHeadArtifact(head, "x|y|16", "t"))
    clip = noise(65.0, 9)
    vecs, long = st.encode_with_transcripts([clip])
    wins = long[0].windows
    assert [w.offset_seconds for w in wins] == [0.0, 30.0, 60.0]
    assert [round(w.seconds, 3) for w in wins] == [30.0, 30.0, 5.0]
    assert all(w.transcript is None for w in wins)  # no fusion weight: no transcription
    expected = sum(w.seconds * w.vector for w in wins)
    assert np.allclose(vecs[0], expected / np.linalg.norm(expected), atol=1e-6)
    assert math.isclose(float(np.linalg.norm(vecs[0])), 1.0, rel_tol=1e-5)


@needs_data
@pytest.mark.slow
def test_starter_encoder_audio_to_text() -> None:
    from retrieval.encoders import create_encoder
    from retrieval.splits import split_of

    enc = create_encoder("starter", device="cpu")
    names = [
        next(f"{d}_jackson_{k}" for k in range(50) if split_of(f"fsdd-{d}_jackson_{k}") == "test")
        for d in (1, 5, 9)
    ]  # held-out clips only
    clips = [decode_audio(DATA / "fsdd" / "audio" / f"{n}.flac") for n in names]
    audio = enc.encode_audio(clips)
    assert audio.shape == (3, enc.dim)
    assert np.allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    sim = (
        audio
        @ enc.encode_texts(
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        ).T
    )
    assert [int(i) for i in sim.argmax(axis=1)] == [1, 5, 9]
