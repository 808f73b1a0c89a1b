"""The starter model's audio tower: Whisper tiny.en encoder + trained head, fused with transcripts.

How acoustic and spoken signals combine (weights chosen on VALIDATION splits only, stored in
the head artifact's `fusion` metadata):

    speech(window) = transcript has a letter or digit
                     and no_speech_prob <= max_no_speech_prob
                     and avg_logprob >= min_avg_logprob           # Whisper is confident
                     and zlib compression ratio <= 2.4            # not a decoding loop
    sure(t) = avg_logprob >= sure_logprob       (split "logprob": Whisper's own confidence)
            | the transcript has >= 2 words     (split "words", the v1 and v2 heads' rule)
    w = phrase_weight if sure(t) else transcript_weight   (0 if not speech)
    vector(window) = normalize((1 - w) * head(audio) + w * text(normalize_transcript(t)))

`text` is the locked text tower of the same space: a spoken sentence lands where its written
form lands; sounds without confident speech keep the acoustic vector. Each head's choice (grid
search on validation, indexer/align_audio/fusion.py) is in its card.

Long recordings: windows of `window_seconds` with a fixed hop (retrieval.media.audio), each a
`WindowVector`; the file vector is the duration-weighted mean of the window vectors, normalised
(`encode_audio` applies the same rule to clips longer than one window).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders.audio_head import AudioHeadArtifact, load_audio_head
from retrieval.encoders.audio_whisper import Transcript, WhisperAudioTower, WhisperTowerConfig
from retrieval.encoders.base import AudioDescription, l2_normalize
from retrieval.errors import SpaceMismatchError
from retrieval.media.audio import HOP_SECONDS, WINDOW_SECONDS, Audio, AudioSource, split_windows

HEAD_VERSION = "starter-audio-head-v1"
HEAD_PATH = Path(__file__).parent / "weights" / f"{HEAD_VERSION}.safetensors"
TextFn = Callable[[Sequence[str]], np.ndarray]
DESCRIBE_CLIPS = 32  # clips per encode/decode call: bounds memory, fills the decoder's batches


@dataclass(frozen=True)
class FusionConfig:
    transcript_weight: float = 0.0  # w for a one-word transcript (error-prone, ambiguous)
    phrase_weight: float = 0.0  # w for a transcript of two or more words
    max_no_speech_prob: float = 0.6
    min_avg_logprob: float = -1.0
    max_compression_ratio: float = 2.4  # Whisper's own test for looping output ("AHHHH...")
    split: str = "words"  # what earns phrase_weight: "words" (>= 2) or "logprob" (>= sure_logprob)
    sure_logprob: float = -0.3

    def is_speech(self, t: Transcript) -> bool:
        return (
            any(ch.isalnum() for ch in t.text)
            and t.no_speech_prob <= self.max_no_speech_prob
            and t.avg_logprob >= self.min_avg_logprob
            and compression_ratio(t.text) <= self.max_compression_ratio
        )

    def weight(self, t: Transcript) -> float:
        if not self.is_speech(t):
            return 0.0
        if self.split == "logprob":
            sure = t.avg_logprob >= self.sure_logprob
        else:
            sure = len(_WORD.findall(t.text)) >= 2
        return self.phrase_weight if sure else self.transcript_weight


_WORD = re.compile(r"[^\W_]+")
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def normalize_transcript(text: str) -> str:
    """What gets embedded: Whisper writes "7 3 0" where people write "seven three zero"."""
    return re.sub(
        r"(?<![\w.,])(\d)(?![\w]|[.,]\d)", lambda m: _DIGITS[int(m.group(1))], text.strip()
    )


def fuse(acoustic: np.ndarray, spoken: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """acoustic, spoken (N, D) L2-normalised; weights (N,) in [0, 1] -> fused (N, D) normalised."""
    w = np.asarray(weights, np.float32)[:, None]
    mixed = l2_normalize((1.0 - w) * acoustic + w * spoken)
    return np.where(w > 0, mixed, acoustic).astype(np.float32)


@dataclass(frozen=True)
class WindowVector:
    offset_seconds: float
    seconds: float
    vector: np.ndarray  # (D,) float32, L2-normalised
    transcript: Transcript | None


@dataclass(frozen=True)
class LongAudioEmbedding:
    windows: list[WindowVector]
    vector: np.ndarray  # (D,) the file vector


class StarterAudioTower:
    """`encode_audio` for StarterEncoder: Audio clips (16 kHz) -> (N, D) in the starter space."""

    def __init__(
        self,
        tower: WhisperAudioTower,
        artifact: AudioHeadArtifact,
        encode_texts: TextFn | None = None,
    ) -> None:
        self.tower = tower
        self.artifact = artifact
        # None: acoustic vectors only, no transcription (~25x cheaper on CPU, no spoken content).
        self.encode_texts = encode_texts
        self.fusion = FusionConfig(**artifact.fusion)
        self.dim = artifact.head.config.out_dim

    def acoustic(
        self, clips: Sequence[Audio], encoded: Sequence[np.ndarray] | None = None
    ) -> np.ndarray:
        """Head vectors of clips of at most one window, (N, D), no transcript."""
        import torch

        if not clips:
            return np.zeros((0, self.dim), np.float32)
        tokens = torch.from_numpy(self.tower.token_features(clips, encoded))  # (N, K, 384)
        with torch.inference_mode():  # row by row: torch's GEMM rounds by batch size (~1e-8)
            rows = [self.artifact.head(tokens[i : i + 1]).numpy() for i in range(len(tokens))]
        return np.concatenate(rows).astype(np.float32)

    def encode_windows(
        self, windows: Sequence[Audio]
    ) -> tuple[np.ndarray, list[Transcript | None]]:
        """Window vectors (N, D) with fusion applied, and their transcripts (None: not run).
        The encoder runs once per window; the head and the decoder both read its output."""
        f = self.fusion
        if max(f.transcript_weight, f.phrase_weight) <= 0 or self.encode_texts is None:
            return self.acoustic(windows), [None] * len(windows)
        encoded = self.tower.encode(windows)
        vecs = self.acoustic(windows, encoded)
        if not windows:
            return vecs, []
        transcripts = self.tower.transcribe_detailed(windows, encoded=encoded)
        weights = np.array([f.weight(t) for t in transcripts], np.float32)
        spoken = np.zeros_like(vecs)
        if (weights > 0).any():
            spoken[weights > 0] = self.encode_texts(
                [
                    normalize_transcript(t.text)
                    for t, w in zip(transcripts, weights, strict=True)
                    if w > 0
                ]
            )
        return fuse(vecs, spoken, weights), list(transcripts)

    def encode_with_transcripts(
        self, clips: Sequence[Audio]
    ) -> tuple[np.ndarray, list[LongAudioEmbedding]]:
        """(N, D) clip vectors plus, per clip, its windows (offsets, vectors, transcripts)."""
        spans = [list(split_windows(c, WINDOW_SECONDS, HOP_SECONDS)) for c in clips]
        flat = [w for s in spans for _, w in s]
        vecs, transcripts = self.encode_windows(flat)
        out, k = [], 0
        for s in spans:
            wins = [
                WindowVector(off, w.seconds, vecs[k + j], transcripts[k + j])
                for j, (off, w) in enumerate(s)
            ]
            k += len(s)
            out.append(LongAudioEmbedding(wins, _file_vector(wins)))
        return np.stack([e.vector for e in out]) if out else np.zeros((0, self.dim)), out

    def encode_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> np.ndarray:
        if not clips:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([d.vector for d in self.describe_audio(clips, batch_size)])

    def describe_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> list[AudioDescription]:
        """The file vector, the transcript of the windows Whisper heard speech in, and the
        per-window vectors (kept only when there is more than one window).

        Clips are encoded and decoded in batches (of `DESCRIBE_CLIPS` clips; `batch_size` is
        the interface's and too small for the decoder). The same file gives the same vector
        and transcript whatever batch it is in: vectors to 1e-6 (tests/test_audio_batching.py).
        Encoder, decoder and head are bit-identical across batches; a transcript's text vector
        comes from a batched text tower, which moved fused vectors by up to 1.3e-7."""
        out = []
        for s in range(0, len(clips), DESCRIBE_CLIPS):
            for emb in self.encode_with_transcripts(clips[s : s + DESCRIBE_CLIPS])[1]:
                said = [
                    w.transcript.text.strip()
                    for w in emb.windows
                    if w.transcript is not None and self.fusion.is_speech(w.transcript)
                ]
                segments = [(w.offset_seconds, w.seconds, w.vector) for w in emb.windows]
                out.append(
                    AudioDescription(
                        emb.vector,
                        transcript=" ".join(said) or None,
                        segments=segments if len(segments) > 1 else [],
                    )
                )
        return out

    def encode_long(
        self,
        source: AudioSource,
        *,
        window_seconds: float = WINDOW_SECONDS,
        hop_seconds: float = HOP_SECONDS,
        **limits: float,
    ) -> LongAudioEmbedding:
        """Stream a recording of any length; memory grows with the number of windows' vectors."""
        from retrieval.media.audio import iter_audio_windows

        wins: list[WindowVector] = []
        for off, w in iter_audio_windows(
            source,
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            **limits,  # type: ignore[arg-type]
        ):
            vec, tr = self.encode_windows([w])
            wins.append(WindowVector(off, w.seconds, vec[0], tr[0]))
        return LongAudioEmbedding(wins, _file_vector(wins))

    def token_features(self, clips: Sequence[Audio]) -> np.ndarray:
        """(N, K, 384) time-pooled encoder tokens for the re-ranker (first window of each clip)."""
        return self.tower.token_features([next(split_windows(c))[1] for c in clips])

    def transcribe(self, clips: Sequence[Audio]) -> list[str]:
        return self.tower.transcribe(clips)


def _file_vector(wins: Sequence[WindowVector]) -> np.ndarray:
    weights = np.array([max(w.seconds, 1e-3) for w in wins], np.float32)
    return l2_normalize((weights[:, None] * np.stack([w.vector for w in wins])).sum(0))


def create_audio_tower(
    device: str = "cpu",
    encode_texts: TextFn | None = None,
    space_key: str | None = None,
    head_path: Path = HEAD_PATH,
) -> StarterAudioTower:
    """Whisper tiny.en + the trained head. Pass the starter's `encode_texts` (and its
    `space.key()`, checked against the head's) to enable transcript fusion."""
    artifact = load_audio_head(head_path)
    if space_key is not None and space_key != artifact.space_key:
        raise SpaceMismatchError(
            f"Audio head {head_path.name} was trained against {artifact.space_key!r}, not "
            f"{space_key!r}. Retrain it: nice crossmedia align-audio --text starter --out {head_path}"
        )
    cfg = WhisperTowerConfig(**artifact.tower) if artifact.tower else WhisperTowerConfig()
    return StarterAudioTower(WhisperAudioTower(cfg, device=device), artifact, encode_texts)


def attach_audio_tower(encoder: Any, device: str = "cpu", head_path: Path = HEAD_PATH) -> None:
    """Bind the audio tower to a StarterEncoder (`encoder.audio_tower`), loaded on first use.

    Lazy so that image/text users never pay for Whisper, and so that a missing or mismatched
    audio head surfaces as its own error when audio is encoded, not when the encoder is built.
    """
    from retrieval.modality import Modality

    encoder.audio_tower = _LazyAudioTower(encoder, device, head_path)
    encoder.modalities = frozenset(encoder.modalities | {Modality.AUDIO})


class _LazyAudioTower:
    def __init__(self, encoder: Any, device: str, head_path: Path) -> None:
        self._args = (encoder, device, head_path)
        self._tower: StarterAudioTower | None = None

    def get(self) -> StarterAudioTower:
        if self._tower is None:
            encoder, device, head_path = self._args
            self._tower = create_audio_tower(
                device,
                encode_texts=encoder.encode_texts,
                space_key=encoder.space.key(),
                head_path=head_path,
            )
        return self._tower

    def encode_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> np.ndarray:
        return self.get().encode_audio(clips, batch_size=batch_size)

    def describe_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> list[AudioDescription]:
        return self.get().describe_audio(clips, batch_size=batch_size)
