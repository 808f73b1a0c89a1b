"""The encoder interface: every tower maps its modality into one shared, L2-normalised space."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.errors import CrossmediaError
from retrieval.modality import Modality

if TYPE_CHECKING:
    from PIL import Image

    from retrieval.media.audio import Audio


@dataclass(frozen=True)
class EmbeddingSpace:
    """What a vector means. Vectors from two different spaces must never be compared."""

    model: str  # registry name, e.g. "starter" or "openclip:ViT-B-32/laion2b_s34b_b79k"
    head_version: str  # version of trained heads ("" when the model ships its own projections)
    dim: int
    # The audio head bound into this space ("" when none, or not recorded). Only audio vectors
    # depend on it, so it is not part of the key (re-rankers and feature caches are keyed by image
    # and text) or of equality; a catalogue holding audio refuses another one (catalogue_space.py).
    audio_head: str = field(default="", compare=False)

    def key(self) -> str:
        return f"{self.model}|{self.head_version}|{self.dim}"

    def as_dict(self) -> dict[str, Any]:
        """The fields; `audio_head` only when there is one (spaces without audio read as before)."""
        out = asdict(self)
        if not out["audio_head"]:
            del out["audio_head"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EmbeddingSpace:
        data = json.loads(text)
        return cls(
            model=data["model"],
            head_version=data["head_version"],
            dim=int(data["dim"]),
            audio_head=data.get("audio_head", ""),
        )

    def mismatch(self, other: EmbeddingSpace, what: str) -> str:
        """Why `what`, built in this space, refuses vectors of `other`, and the fix."""
        return (
            f"{what} was built with model {self.model!r} (heads {self.head_version or 'none'}, "
            f"dim {self.dim}); this request uses {other.model!r} (heads "
            f"{other.head_version or 'none'}, dim {other.dim}). Vectors of different models cannot "
            f"be compared. Use --model {self.model}, or index into a new --data-dir to switch "
            "models (re-embedding everything)."
        )

    def audio_mismatch(self, other: EmbeddingSpace, what: str) -> str:
        """Why `what`, holding audio vectors of this space's audio head, refuses `other`'s."""
        return (
            f"{what} holds audio vectors made by audio head {self.audio_head!r}; this request "
            f"uses {other.audio_head!r} (model {other.model!r}). Audio vectors of different audio "
            "heads cannot be compared. Re-index into a new --data-dir to move to the new audio "
            "head (re-embedding everything), or use the version of crossmedia that made them."
        )

    def fingerprint(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()[:16]


@dataclass
class AudioDescription:
    """What the audio tower says of one recording: its vector, what was said (if anything), and
    per-window vectors (offset s, duration s, vector) so a hit can point into a long file."""

    vector: np.ndarray
    transcript: str | None = None
    segments: list[tuple[float, float, np.ndarray]] = field(default_factory=list)
    tokens: np.ndarray | None = None


class UnsupportedModalityError(CrossmediaError):
    """This encoder has no tower for the requested modality."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Encoder(ABC):
    """Batch-first encoder. Every `encode_*` returns float32 (N, dim), rows L2-normalised."""

    space: EmbeddingSpace
    modalities: frozenset[Modality]

    @property
    def dim(self) -> int:
        return self.space.dim

    @abstractmethod
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray: ...

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        raise UnsupportedModalityError(f"Model {self.space.model!r} has no image tower.")

    def encode_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> np.ndarray:
        raise UnsupportedModalityError(
            f"Model {self.space.model!r} has no audio tower. Use a model with audio support, "
            "e.g. --model starter."
        )

    def encode_with_tokens(
        self, modality: Modality, items: Sequence, batch_size: int | None = None
    ) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """Vectors plus, where the encoder has them, compact per-item token sets for the
        re-ranker: a list of (n_tokens, token_dim) arrays. Encoders without tokens return None."""
        return self.encode(modality, items, batch_size), None

    def describe_audio(self, clips: Sequence[Audio], batch_size: int = 8) -> list[AudioDescription]:
        """Vectors plus transcripts and windows where the audio tower provides them."""
        vecs, tokens = self.encode_with_tokens(Modality.AUDIO, clips, batch_size)
        return [
            AudioDescription(v, tokens=None if tokens is None else tokens[i])
            for i, v in enumerate(vecs)
        ]

    def encode_text(self, text: str) -> np.ndarray:
        return self.encode_texts([text])[0]

    def encode_image(self, image: Image.Image) -> np.ndarray:
        return self.encode_images([image])[0]

    def encode(
        self, modality: Modality, items: Sequence, batch_size: int | None = None
    ) -> np.ndarray:
        """Dispatch on modality; `items` are str, PIL images or Audio clips."""
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        if modality == Modality.TEXT:
            return self.encode_texts(items, **kwargs)
        if modality == Modality.IMAGE:
            return self.encode_images(items, **kwargs)
        if modality == Modality.AUDIO:
            return self.encode_audio(items, **kwargs)
        raise UnsupportedModalityError(f"Unknown modality {modality!r}.")
