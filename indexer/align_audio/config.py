"""The one config of `crossmedia align-audio` (see indexer/align_audio/job.py)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from indexer.align_audio.train import AudioTrainConfig
from indexer.training.paths import cache_dir


@dataclass
class AlignAudioConfig:
    out: Path  # the audio head (.safetensors); with whisper features, a card `<out>.md` beside it
    data_root: Path | None = None  # None: $CROSSMEDIA_TRAIN_DATA or ../shared/data
    cache: Path | None = None  # audio feature cache; None: <user cache>/audio
    text: str = "starter"  # the locked text side: "starter" (its space) or "minilm" (raw)
    features: str = "whisper"  # "whisper" (the starter's tower) or "mfcc" (baseline)
    train: AudioTrainConfig = field(default_factory=AudioTrainConfig)  # epochs and seed included
    transcribe_splits: tuple[str, ...] = ("val", "test")  # transcripts cached for these splits

    def cache_path(self) -> Path:
        return Path(self.cache) if self.cache is not None else cache_dir("audio")

    def command(self) -> str:
        parts = [
            "crossmedia align-audio",
            f"--out {shlex.quote(str(self.out))}",
            f"--features {self.features}",
            f"--epochs {self.train.epochs}",
            f"--seed {self.train.seed}",
        ]
        if self.text != "starter":
            parts.append(f"--text {self.text}")
        return " ".join(parts)
