"""Image decoding that survives real files: any mode to RGB, EXIF orientation, bounded size."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from retrieval.errors import MediaError, MediaTooLargeError, UnsupportedMediaError
from retrieval.media.sniff import sniff
from retrieval.modality import Modality


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000  # about 8000 x 8000


def _read(data: bytes | Path, limits: ImageLimits) -> bytes:
    if isinstance(data, (str, Path)):
        from retrieval.media.files import read_regular_file

        # Regular files only, at most limit+1 bytes read: a query "image" of /dev/zero or a FIFO
        # is refused, not read without bound.
        return read_regular_file(data, limits.max_bytes, what="image", setting="max_image_bytes")
    if len(data) > limits.max_bytes:
        raise MediaTooLargeError(
            f"Image of {len(data)} bytes exceeds the limit of {limits.max_bytes} bytes "
            "(setting max_image_bytes)."
        )
    return bytes(data)


def decode_image(
    data: bytes | Path, limits: ImageLimits | None = None, max_side: int | None = None
) -> Image.Image:
    """Decode to an RGB image, upright per EXIF, alpha composited on white.

    The pixel limit is checked from the header before any pixel is decoded, so a decompression
    bomb costs a few bytes of reading, not gigabytes of memory. `max_side` lets JPEG decode at a
    reduced scale (encoders look at 224 px; decoding 12 MP to throw it away is the slow part).
    """
    limits = limits or ImageLimits()
    raw = _read(data, limits)
    if not raw:
        raise UnsupportedMediaError("Empty file: no image data.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(raw))
    except UnidentifiedImageError as exc:
        kind = sniff(raw[:64])
        if kind is not None and kind[0] == Modality.IMAGE:  # an image format's magic, cut short
            raise MediaError(f"Truncated or corrupt {kind[1]} data ({exc}).") from exc
        raise UnsupportedMediaError(
            "Not a recognised image (supported: JPEG, PNG, GIF, WebP, BMP, TIFF)."
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaTooLargeError(f"Image refused as a decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # some decoders (WebP) start at open
        raise MediaError(f"Truncated or corrupt image data ({exc}).") from exc
    w, h = im.size
    if w * h > limits.max_pixels:
        raise MediaTooLargeError(
            f"Image of {w}x{h} = {w * h} pixels exceeds the limit of {limits.max_pixels} "
            "(setting max_image_pixels)."
        )
    if w == 0 or h == 0:
        raise MediaError(f"Image has an empty size {w}x{h}.")
    if max_side is not None and max(w, h) > 2 * max_side:
        im.draft("RGB", (2 * max_side, 2 * max_side))
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"Truncated or corrupt image data ({exc}).") from exc
    return to_rgb(im)


def to_rgb(im: Image.Image) -> Image.Image:
    try:
        im = ImageOps.exif_transpose(im)
    except (ValueError, OSError, TypeError):
        pass  # a broken EXIF block should not cost the image; keep it as stored
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        im = Image.fromarray(((arr - lo) * scale).astype(np.uint8), mode="L")
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def thumbnail(source: bytes | Path | Image.Image, size: int = 256, quality: int = 85) -> bytes:
    """A JPEG thumbnail whose longest side is at most `size` pixels."""
    im = source if isinstance(source, Image.Image) else decode_image(source)
    im = im.copy()
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
