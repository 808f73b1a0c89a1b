"""Decoding uploaded query/item bytes under the server's limits (API-side validation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.settings import Settings
from retrieval.errors import MediaTooLargeError, UnsupportedMediaError
from retrieval.media.decode import MediaLimits
from retrieval.media.image import ImageLimits, decode_image
from retrieval.media.sniff import sniff
from retrieval.modality import Modality

if TYPE_CHECKING:
    from PIL import Image

    from retrieval.media.audio import Audio


def image_limits(settings: Settings) -> ImageLimits:
    return ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)


def load_query_image(data: bytes, settings: Settings) -> Image.Image:
    return decode_image(data, image_limits(settings))


def load_query_audio(data: bytes, settings: Settings) -> Audio:
    from retrieval.media.audio import decode_audio

    if len(data) > settings.max_audio_bytes:
        raise MediaTooLargeError(
            f"Audio of {len(data)} bytes exceeds the limit of {settings.max_audio_bytes} bytes "
            "(CROSSMEDIA_MAX_AUDIO_BYTES)."
        )
    return decode_audio(
        data, max_bytes=settings.max_audio_bytes, max_seconds=settings.max_audio_seconds
    )


def check_upload(data: bytes, filename: str) -> Modality:
    """Refuse what can never be ingested before the ingestor (which applies the size, pixel and
    duration limits while it decodes) spends any work on it."""
    if not data:
        raise UnsupportedMediaError("The uploaded file is empty.")
    found = sniff(data[:64], filename)
    if found is None or found[0] == Modality.TEXT:
        raise UnsupportedMediaError(
            "Not a supported media file (images: JPEG, PNG, GIF, WebP, BMP, TIFF; "
            "audio: WAV, FLAC, OGG, MP3)."
        )
    return found[0]


def media_limits(settings: Settings) -> MediaLimits:
    return MediaLimits(
        image=image_limits(settings),
        max_audio_bytes=settings.max_audio_bytes,
        max_audio_seconds=settings.max_audio_seconds,
    )
