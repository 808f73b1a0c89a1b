"""Audio decoding: bytes or a path -> mono float32 samples at a known rate, with bounded cost.

Formats: whatever libsndfile (via `soundfile`) reads here: WAV, FLAC, OGG/Vorbis, OGG/Opus and,
with libsndfile >= 1.1, MP3. torchaudio >= 2.9 moved its own decoding to `torchcodec`, which is
not a dependency; torchaudio is used only to resample.

Limits are checked as early as the container allows: the byte size before anything is read, the
duration from the header before any sample is decoded (and again while decoding, for streams
whose header does not say). Long recordings are handled by `iter_audio_windows`, which decodes one
fixed window at a time, so memory stays bounded by the window length, not the file length.

Window contract (shared by every audio tower and the ingestion pipeline): window `k` starts at
`k * hop_seconds` and lasts `window_seconds` (the last one may be shorter); windowing stops at the
first window that reaches the end of the file. No random crops, so the same file always gives the
same windows.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import MediaError, MediaTooLargeError, UnsupportedMediaError

if TYPE_CHECKING:
    import soundfile

AudioSource = bytes | bytearray | memoryview | str | os.PathLike

TARGET_RATE = 16_000
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_SECONDS = 600.0  # one decode_audio call holds the whole clip in memory
DEFAULT_MAX_STREAM_SECONDS = 6 * 3600.0  # iter_audio_windows holds one window at a time
SILENCE_PEAK = 1e-4  # about -80 dBFS: below this nothing a tower can hear
WINDOW_SECONDS = 30.0
HOP_SECONDS = 30.0


@dataclass(frozen=True)
class Audio:
    """Decoded mono audio: `samples` float32 (n,) in [-1, 1] at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def decode_audio(
    data: AudioSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    target_rate: int = TARGET_RATE,
    allow_silence: bool = False,
) -> Audio:
    """Decode a whole clip to mono float32 at `target_rate`.

    Raises MediaTooLargeError (bytes or seconds over the limit, naming the setting),
    UnsupportedMediaError (not audio we can read), MediaError (empty, truncated, non-finite, or
    silent unless `allow_silence`). For recordings longer than `max_seconds` use
    `iter_audio_windows`.
    """
    with _open(data, max_bytes) as f:
        rate = int(f.samplerate)
        limit = int(math.floor(max_seconds * rate))
        if f.frames > 0 and f.frames > limit:
            raise _too_long(f.frames / rate, max_seconds, "max_seconds")
        block = _read(f, limit + 1)
        if len(block) > limit:  # the header under-reported the length
            raise _too_long(len(block) / rate, max_seconds, "max_seconds")
        if len(block) < f.frames - _slack(f) or _wav_truncated(data, f):
            raise MediaError(
                f"Audio is truncated: the header promises more than the {len(block)} samples "
                "that could be decoded. Re-export or re-download the file."
            )
    samples = _to_mono(block)
    if samples.size == 0:
        raise MediaError(
            "Audio decodes to no samples: a zero-length recording, or cut off before its first "
            "complete block. Re-export the file."
        )
    _check_finite(samples)
    if not allow_silence and float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise MediaError(
            f"Audio is silent (peak below {SILENCE_PEAK:g}, about -80 dBFS): nothing to search for. "
            "Check the recording level or the input channel."
        )
    return Audio(resample(np.clip(samples, -1.0, 1.0), rate, target_rate), target_rate)


def iter_audio_windows(
    data: AudioSource,
    *,
    window_seconds: float = WINDOW_SECONDS,
    hop_seconds: float = HOP_SECONDS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_STREAM_SECONDS,
    target_rate: int = TARGET_RATE,
) -> Iterator[tuple[float, Audio]]:
    """Yield `(offset_seconds, window)` for a recording of any length, one window in memory.

    Silent windows are yielded (a pause inside a long recording is not an error); empty,
    unreadable or non-finite audio raises as in `decode_audio`.
    """
    _check_window(window_seconds, hop_seconds)
    with _open(data, max_bytes) as f:
        rate = int(f.samplerate)
        if f.frames > 0 and f.frames / rate > max_seconds:
            raise _too_long(f.frames / rate, max_seconds, "max_seconds (stream limit)")
        win, hop = int(round(window_seconds * rate)), int(round(hop_seconds * rate))
        start, produced = 0, False
        while True:
            f.seek(start)
            block = _read(f, win)
            if block.shape[0] == 0:
                break
            if (start + block.shape[0]) / rate > max_seconds:
                raise _too_long((start + block.shape[0]) / rate, max_seconds, "max_seconds")
            samples = _to_mono(block)
            _check_finite(samples)
            produced = True
            yield (
                start / rate,
                Audio(resample(np.clip(samples, -1.0, 1.0), rate, target_rate), target_rate),
            )
            if block.shape[0] < win or (f.frames > 0 and start + win >= f.frames):
                break
            start += hop
        if not produced:
            raise MediaError("Audio contains no samples (zero-length recording).")


def split_windows(
    audio: Audio, window_seconds: float = WINDOW_SECONDS, hop_seconds: float = HOP_SECONDS
) -> Iterator[tuple[float, Audio]]:
    """The window contract applied to an already decoded clip (views, no copies)."""
    _check_window(window_seconds, hop_seconds)
    win = int(round(window_seconds * audio.sample_rate))
    hop = int(round(hop_seconds * audio.sample_rate))
    n = len(audio.samples)
    start = 0
    while True:
        yield (
            start / audio.sample_rate,
            Audio(audio.samples[start : start + win], audio.sample_rate),
        )
        if start + win >= n:
            return
        start += hop


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if rate == target_rate or samples.size == 0:
        return samples
    import torch

    with torch.inference_mode():
        out = _resampler(rate, target_rate)(torch.from_numpy(samples))
    return out.numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=16)
def _resampler(rate: int, target_rate: int) -> Any:
    import torchaudio

    # The transform computes its sinc kernel once; the functional form recomputes it per call.
    return torchaudio.transforms.Resample(rate, target_rate)


def _open(data: AudioSource, max_bytes: int) -> soundfile.SoundFile:
    import soundfile as sf

    source: io.BytesIO | str
    if isinstance(data, (bytes, bytearray, memoryview)):
        size, source, name = len(data), io.BytesIO(bytes(data)), "audio bytes"
    else:
        path = Path(data)
        if not path.is_file():
            raise MediaError(f"Audio file not found: {path}")
        size, source, name = path.stat().st_size, str(path), str(path)
    if size == 0:
        raise MediaError(f"Audio is empty (0 bytes): {name}.")
    if size > max_bytes:
        raise MediaTooLargeError(
            f"Audio of {size} bytes exceeds max_bytes={max_bytes}. Raise the max_bytes setting "
            "or send a shorter or more compressed file."
        )
    try:
        return sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise UnsupportedMediaError(
            f"Cannot decode {name} as audio: {libsndfile_reason(exc)}. Supported: WAV, FLAC, "
            "OGG (Vorbis/Opus), MP3. Convert it, e.g. `ffmpeg -i in.xyz out.flac`."
        ) from exc


# libsndfile says these about bytes it cannot parse, whatever the file's real state ("does not
# exist" for a garbage MP3 that plainly exists).
_MISLEADING = (
    "does not exist",
    "not a regular file",
    "format not recognised",
    "unknown format",
    "unsupported",
    "unspecified internal error",
    "malformed",
)


def libsndfile_reason(exc: BaseException) -> str:
    """libsndfile's message, rewritten where it misdescribes undecodable bytes."""
    original = str(getattr(exc, "error_string", None) or exc).strip()
    if any(m in original.lower() for m in _MISLEADING):
        return (
            "not a decodable audio file (corrupt, truncated or an unsupported codec) "
            f"(libsndfile: {original})"
        )
    return original


def _read(f: soundfile.SoundFile, frames: int) -> np.ndarray:
    import soundfile as sf

    try:
        return f.read(frames=frames, dtype="float32", always_2d=True)  # (n, channels)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise MediaError(
            f"Audio is corrupt or truncated: decoding failed "
            f"({getattr(exc, 'error_string', exc)}). Re-export the file."
        ) from exc


def _slack(f: soundfile.SoundFile) -> int:
    # MP3 headers give an estimated length; lossless containers are exact.
    return int(0.05 * f.frames) + 4096 if f.format == "MP3" else 0


def _wav_truncated(data: AudioSource, f: soundfile.SoundFile) -> bool:
    # libsndfile silently shortens a WAV whose data chunk is cut; the chunk header still says.
    if f.format != "WAV":
        return False
    if isinstance(data, (bytes, bytearray, memoryview)):
        head, size = bytes(data[:65536]), len(data)
    else:
        with Path(data).open("rb") as fh:
            head, size = fh.read(65536), Path(data).stat().st_size
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            return length not in (0, 0xFFFFFFFF) and pos + 8 + length > size
        pos += 8 + length + (length & 1)
    return False


def _to_mono(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()


def _check_finite(samples: np.ndarray) -> None:
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise MediaError(
            f"Audio contains {bad} non-finite samples (NaN or Inf), so it is corrupt. Re-export "
            "it as 16-bit PCM."
        )


def _check_window(window_seconds: float, hop_seconds: float) -> None:
    if not (window_seconds > 0 and 0 < hop_seconds <= window_seconds):
        raise ValueError(
            f"Need 0 < hop_seconds <= window_seconds, got window={window_seconds}, "
            f"hop={hop_seconds}."
        )


def _too_long(seconds: float, limit: float, setting: str) -> MediaTooLargeError:
    return MediaTooLargeError(
        f"Audio of {seconds:.1f} s exceeds {setting}={limit:g} s. Raise that setting, or index "
        "long recordings window by window with iter_audio_windows."
    )
