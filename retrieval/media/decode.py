"""The decode stage: bytes of one media file -> a validated payload the encoders take, under
`MediaLimits` (shared by ingestion and the API)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import UnsupportedMediaError
from retrieval.limits import MAX_TEXT_CHARS
from retrieval.media.image import ImageLimits, decode_image
from retrieval.media.sniff import sniff
from retrieval.modality import Modality


@dataclass
class MediaRef:
    """One media file of a source entry: what it claims to be and where it is."""

    modality: Modality
    path: Path
    mime: str | None = None


@dataclass(frozen=True)
class MediaLimits:
    image: ImageLimits = ImageLimits()
    max_audio_bytes: int = 200 * 1024 * 1024
    max_audio_seconds: float = 3600.0  # longer recordings are refused, naming this setting
    decode_side: int = 448  # images are decoded at no more than about this size (see decode_image)
    max_text_chars: int = MAX_TEXT_CHARS  # longer captions and texts are truncated, with a warning

    def max_bytes(self, modality: Modality | str) -> int:
        return self.image.max_bytes if modality == Modality.IMAGE else self.max_audio_bytes

    def setting(self, modality: Modality | str) -> str:
        """The setting an operator raises to admit a larger file of this modality."""
        return (
            "CROSSMEDIA_MAX_IMAGE_BYTES"
            if modality == Modality.IMAGE
            else "CROSSMEDIA_MAX_AUDIO_BYTES"
        )


@dataclass
class DecodedMedia:
    modality: Modality
    path: Path | None
    mime: str | None
    size_bytes: int
    payload: Any  # PIL image or Audio
    width: int | None = None
    height: int | None = None
    duration: float | None = None

    @classmethod
    def unchanged(cls, ref: MediaRef) -> DecodedMedia:
        return cls(modality=ref.modality, path=ref.path, mime=ref.mime, size_bytes=0, payload=None)


def decode_media(data: bytes, ref: MediaRef, limits: MediaLimits) -> DecodedMedia:
    """Decode `data` as the modality `ref` claims; the content must agree with the claim."""
    kind = sniff(data[:64], ref.path.name if ref.path else "")
    mime = kind[1] if kind else None
    if ref.modality == Modality.IMAGE:
        if kind is not None and kind[0] != Modality.IMAGE:
            raise UnsupportedMediaError(f"expected an image but the content is {kind[1]}")
        with_size = _image_size(data, limits)
        im = decode_image(data, limits.image, max_side=limits.decode_side)
        return DecodedMedia(
            Modality.IMAGE, ref.path, mime, len(data), im, width=with_size[0], height=with_size[1]
        )
    if ref.modality == Modality.AUDIO:
        from retrieval.media.audio import decode_audio

        audio = decode_audio(
            data, max_bytes=limits.max_audio_bytes, max_seconds=limits.max_audio_seconds
        )
        return DecodedMedia(
            Modality.AUDIO, ref.path, mime, len(data), audio, duration=audio.seconds
        )
    raise UnsupportedMediaError(f"cannot decode modality {ref.modality!r}")


def _image_size(data: bytes, limits: MediaLimits) -> tuple[int, int]:
    """The stored (upright) size, read from the header without decoding pixels."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - decode_image raises the specific error right after
        return (0, 0)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)
