"""Audio decoding: formats, limits, bad inputs, windows. Generated inputs are seeded and small."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from retrieval.errors import MediaError, MediaTooLargeError, UnsupportedMediaError
from retrieval.media.audio import Audio, decode_audio, iter_audio_windows, split_windows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="../shared/data is missing (real audio for decoding tests)"
)


def tone(seconds: float, rate: int, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * rate)) / rate
    x = amp * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def encode(x: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt,subtype",
    [
        ("WAV", "PCM_16"),
        ("WAV", "FLOAT"),
        ("FLAC", "PCM_16"),
        ("OGG", "VORBIS"),
        ("MP3", "MPEG_LAYER_III"),
    ],
)
def test_formats_decode_to_mono_16k(fmt: str, subtype: str) -> None:
    audio = decode_audio(encode(tone(1.3, 44100, channels=2), 44100, fmt, subtype))
    assert audio.sample_rate == 16000 and audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert abs(audio.seconds - 1.3) < 0.06  # MP3 adds encoder delay
    assert 0.2 < np.abs(audio.samples).max() <= 1.0


def test_target_rate_and_path_input(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, tone(0.7, 8000), 8000)
    audio = decode_audio(path, target_rate=22050)
    assert audio.sample_rate == 22050 and abs(audio.seconds - 0.7) < 1e-3
    assert np.array_equal(audio.samples, decode_audio(path.read_bytes(), target_rate=22050).samples)


@needs_data
@pytest.mark.parametrize(
    "rel",
    [
        "animal_sounds/audio/lion/aslan_1.flac",
        "fsdd/audio/0_george_0.flac",
        "tuxpaint/audio/animals_amphibians_frog.ogg",
    ],
)
def test_real_files(rel: str) -> None:
    audio = decode_audio(DATA / rel)
    assert audio.sample_rate == 16000 and 0.1 < audio.seconds < 30
    assert np.isfinite(audio.samples).all()


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"\x00garbage, not audio" * 50, "Cannot decode"),
    ],
)
def test_empty_and_garbage(data: bytes, match: str) -> None:
    with pytest.raises(MediaError, match=match):
        decode_audio(data)


def test_garbage_is_unsupported() -> None:
    with pytest.raises(UnsupportedMediaError, match="Supported: WAV, FLAC"):
        decode_audio(bytes(np.random.default_rng(11).integers(0, 256, 997, dtype=np.uint8)))


@pytest.mark.parametrize("fmt", ["FLAC", "WAV"])
def test_truncated(fmt: str) -> None:
    data = encode(tone(2.0, 16000), 16000, fmt, "PCM_16")
    with pytest.raises(MediaError, match="truncated|corrupt"):
        decode_audio(data[: len(data) // 2])


def test_truncated_real_flac(tmp_path: Path) -> None:
    data = encode(tone(3.0, 22050), 22050, "FLAC", "PCM_16")
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(MediaError, match="truncated|corrupt"):
        decode_audio(path)


def test_zero_length_recording() -> None:
    with pytest.raises(MediaError, match="no samples"):
        decode_audio(encode(np.zeros((0, 1), np.float32), 16000, "WAV", "PCM_16"))


def test_nan_samples() -> None:
    x = tone(0.5, 16000)
    x[100:117] = np.nan
    with pytest.raises(MediaError, match="17 non-finite"):
        decode_audio(encode(x, 16000, "WAV", "FLOAT"))


def test_silence_refused_unless_allowed() -> None:
    data = encode(np.zeros((8000, 1), np.float32), 16000, "WAV", "PCM_16")
    with pytest.raises(MediaError, match="silent"):
        decode_audio(data)
    assert decode_audio(data, allow_silence=True).seconds == pytest.approx(0.5)


def test_byte_limit_checked_before_decoding() -> None:
    data = encode(tone(1.0, 16000), 16000, "WAV", "PCM_16")
    with pytest.raises(MediaTooLargeError, match="max_bytes=1000"):
        decode_audio(data, max_bytes=1000)


def test_duration_limit_names_setting() -> None:
    data = encode(tone(3.0, 8000), 8000, "FLAC", "PCM_16")
    with pytest.raises(MediaTooLargeError, match=r"3\.0 s exceeds max_seconds=2 s"):
        decode_audio(data, max_seconds=2)


def test_split_windows_contract() -> None:
    audio = Audio(np.arange(16000 * 70, dtype=np.float32) / 1e7, 16000)
    wins = list(split_windows(audio, 30.0, 30.0))
    assert [o for o, _ in wins] == [0.0, 30.0, 60.0]
    assert [round(w.seconds, 3) for _, w in wins] == [30.0, 30.0, 10.0]
    overlap = list(split_windows(audio, 30.0, 20.0))
    assert [o for o, _ in overlap] == [0.0, 20.0, 40.0]  # the window at 40 s reaches the end
    short = list(split_windows(Audio(np.ones(17, np.float32), 16000)))
    assert len(short) == 1 and len(short[0][1].samples) == 17
    with pytest.raises(ValueError, match="hop_seconds"):
        list(split_windows(audio, 10.0, 11.0))


def test_stream_windows_match_whole_file_decode(tmp_path: Path) -> None:
    path = tmp_path / "x.flac"
    sf.write(path, tone(7.3, 16000), 16000)
    streamed = list(iter_audio_windows(path, window_seconds=3.0, hop_seconds=2.0))
    whole = list(split_windows(decode_audio(path), 3.0, 2.0))
    assert [o for o, _ in streamed] == [o for o, _ in whole] == [0.0, 2.0, 4.0, 6.0]
    for (_, a), (_, b) in zip(streamed, whole, strict=True):
        assert np.array_equal(a.samples, b.samples)


def test_one_hour_file_refused_by_duration_limit(tmp_path: Path) -> None:
    path = tmp_path / "hour.wav"
    with sf.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        block = tone(60.0, 8000)
        for _ in range(60):
            f.write(block)
    tracemalloc.start()
    with pytest.raises(
        MediaTooLargeError, match=r"3600\.0 s exceeds max_seconds=600 s.*iter_audio_windows"
    ):
        decode_audio(path, max_bytes=10**9)
    assert tracemalloc.get_traced_memory()[1] < 5_000_000  # refused from the header
    tracemalloc.stop()


def test_one_hour_file_windowed_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "hour.wav"
    with sf.SoundFile(path, "w", 8000, 1, "PCM_16") as f:
        block = tone(60.0, 8000)
        for _ in range(60):
            f.write(block)
    tracemalloc.start()
    offsets = []
    for offset, win in iter_audio_windows(path, max_bytes=10**9):
        offsets.append(offset)
        assert win.sample_rate == 16000 and win.seconds == pytest.approx(30.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert offsets == [30.0 * k for k in range(120)]
    assert peak < 20_000_000  # a few windows, not the 115 MB file at 16 kHz float32
    with pytest.raises(MediaTooLargeError, match="stream limit"):
        next(iter_audio_windows(path, max_bytes=10**9, max_seconds=1800))


@pytest.mark.parametrize("source", ["bytes", "path"])
def test_garbage_mp3_message_does_not_say_missing(tmp_path: Path, source: str) -> None:
    """Finding 10: libsndfile calls an undecodable (but present) MP3 "File does not exist"."""
    rng = np.random.default_rng(13)
    data = b"\xff\xfb\x90\x00" + rng.bytes(4001)  # an MPEG frame sync, then noise
    path = tmp_path / "garbage.mp3"
    path.write_bytes(data)
    with pytest.raises(UnsupportedMediaError) as info:
        decode_audio(data if source == "bytes" else path)
    message = str(info.value)
    assert "not a decodable audio file (corrupt, truncated or an unsupported codec)" in message
    assert "(libsndfile: File does not exist" in message  # the original, kept in parentheses
    assert not message.startswith("Cannot decode audio bytes (File does not exist")
