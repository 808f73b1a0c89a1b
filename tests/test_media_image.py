"""Image decoding on images built in memory: every mode to RGB, EXIF orientation, limits checked
from the header before decoding, truncated and non-image input; content sniffing."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import seeded_rng
from PIL import Image, ImageFile

from retrieval.errors import MediaError, MediaTooLargeError, UnsupportedMediaError
from retrieval.media.image import ImageLimits, decode_image, thumbnail
from retrieval.media.sniff import sniff, sniff_file
from retrieval.modality import Modality

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _marked(w: int = 17, h: int = 7) -> Image.Image:
    """Blue w x h with a red 3x3 block in the top-left corner."""
    im = Image.new("RGB", (w, h), BLUE)
    im.paste(RED, (0, 0, 3, 3))
    return im


def _photo_jpeg(w: int = 64, h: int = 48) -> bytes:
    arr = (seeded_rng(3).random((h, w, 3)) * 255).astype(np.uint8)
    return _encode(Image.fromarray(arr), "JPEG", quality=90)


def _close(px: tuple[int, ...], want: tuple[int, ...], tol: int = 0) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px, want, strict=True))


@pytest.mark.parametrize("fmt,tol", [("PNG", 0), ("JPEG", 40)])
def test_exif_orientation_6_rotates_upright(fmt: str, tol: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    data = _encode(
        _marked(17, 7), fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {})
    )
    im = decode_image(data)
    assert im.mode == "RGB" and im.size == (7, 17)
    # The stored top-left corner is the displayed top-right corner after the rotation.
    assert _close(im.getpixel((6, 0)), RED, tol)
    assert _close(im.getpixel((0, 0)), BLUE, tol)
    assert _close(im.getpixel((6, 16)), BLUE, tol)


def test_no_exif_keeps_orientation() -> None:
    im = decode_image(_encode(_marked(17, 7), "PNG"))
    assert im.size == (17, 7) and im.getpixel((0, 0)) == RED


def test_palette_with_transparency_is_composited_on_white() -> None:
    im = Image.new("P", (11, 7), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    im.paste(1, (0, 0, 5, 7))  # left part red, right part index 0 = transparent
    out = decode_image(_encode(im, "PNG", transparency=0))
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == RED and out.getpixel((9, 3)) == WHITE


def test_palette_without_transparency() -> None:
    im = Image.new("P", (7, 7), 1)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    assert decode_image(_encode(im, "GIF")).getpixel((3, 3)) == BLUE


def test_rgba_alpha_composited_on_white() -> None:
    im = Image.new("RGBA", (7, 3), (255, 0, 0, 255))
    im.putpixel((1, 1), (255, 0, 0, 0))
    im.putpixel((2, 1), (0, 0, 0, 128))
    out = decode_image(_encode(im, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == RED
    assert out.getpixel((1, 1)) == WHITE
    assert all(abs(c - 127) <= 2 for c in out.getpixel((2, 1)))


def test_la_alpha_composited_on_white() -> None:
    im = Image.new("LA", (7, 3), (0, 255))
    im.putpixel((3, 1), (0, 0))
    out = decode_image(_encode(im, "PNG"))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((3, 1)) == WHITE


def test_cmyk_jpeg_to_rgb() -> None:
    im = Image.new("CMYK", (11, 7), (0, 255, 255, 0))  # pure red in CMYK
    data = _encode(im, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert out.mode == "RGB" and _close(out.getpixel((5, 3)), RED, 10)


def test_16_bit_greyscale_is_rescaled_to_8_bit() -> None:
    arr = np.linspace(1000, 60000, 7 * 11).reshape(7, 11).astype(np.uint16)
    data = _encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = np.asarray(decode_image(data))
    assert out.shape == (7, 11, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 0, 0] and out[-1, -1].tolist() == [255, 255, 255]
    assert np.all(np.diff(out[..., 0].reshape(-1).astype(int)) >= 0)  # order kept
    assert np.array_equal(out[..., 0], out[..., 2])


def test_greyscale_l_to_rgb() -> None:
    out = decode_image(_encode(Image.new("L", (7, 11), 77), "PNG"))
    assert out.mode == "RGB" and out.size == (7, 11) and out.getpixel((3, 3)) == (77, 77, 77)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_each_format_decodes_and_sniffs(fmt: str, tmp_path: Path) -> None:
    data = _encode(_marked(17, 7), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    im = decode_image(data)
    assert im.mode == "RGB" and im.size == (17, 7)
    mime = {
        "JPEG": "image/jpeg",
        "PNG": "image/png",
        "GIF": "image/gif",
        "BMP": "image/bmp",
        "TIFF": "image/tiff",
        "WEBP": "image/webp",
    }[fmt]
    assert sniff(data[:64]) == (Modality.IMAGE, mime)
    path = tmp_path / "no_extension"
    path.write_bytes(data)
    assert sniff_file(path) == (Modality.IMAGE, mime)
    assert decode_image(path).size == (17, 7)


def _png_claiming(width: int, height: int) -> bytes:
    """A structurally valid PNG whose IHDR declares width x height but holds one row of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" + b"\x00" * min(width, 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _forbid_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded before the size limit was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_decompression_bomb_refused_from_header(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png_claiming(100_000, 100_000)
    assert len(data) < 200
    _forbid_pixel_decoding(monkeypatch)
    t = time.perf_counter()
    with pytest.raises(MediaTooLargeError):
        decode_image(data)
    assert time.perf_counter() - t < 1.0


def test_pixel_limit_refused_from_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below Pillow's own bomb threshold, our configured limit still refuses from the header."""
    data = _png_claiming(3001, 1001)
    _forbid_pixel_decoding(monkeypatch)
    with pytest.raises(MediaTooLargeError, match=r"3001x1001 = 3004001 pixels"):
        decode_image(data, ImageLimits(max_pixels=3_000_000))


def test_pixel_limit_is_inclusive() -> None:
    data = _encode(Image.new("RGB", (7, 11)), "PNG")
    assert decode_image(data, ImageLimits(max_pixels=77)).size == (7, 11)
    with pytest.raises(MediaTooLargeError):
        decode_image(data, ImageLimits(max_pixels=76))


def test_byte_limit_for_bytes_and_paths(tmp_path: Path) -> None:
    data = _photo_jpeg()
    limits = ImageLimits(max_bytes=len(data) - 1)
    with pytest.raises(MediaTooLargeError, match="bytes"):
        decode_image(data, limits)
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    with pytest.raises(MediaTooLargeError, match="big.jpg"):
        decode_image(path, limits)
    assert decode_image(data, ImageLimits(max_bytes=len(data))).size == (64, 48)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_is_a_media_error_naming_truncation(keep: float) -> None:
    data = _photo_jpeg()
    with pytest.raises(MediaError, match="(?i)truncat") as info:
        decode_image(data[: int(len(data) * keep)])
    assert not isinstance(info.value, (MediaTooLargeError, UnsupportedMediaError))


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("keep", [0.3, 0.95])
def test_every_truncated_format_is_a_media_error(fmt: str, keep: float) -> None:
    arr = (seeded_rng(4).random((33, 17, 3)) * 255).astype(np.uint8)
    data = _encode(Image.fromarray(arr), fmt)
    with pytest.raises(MediaError, match="(?i)truncat|corrupt") as info:
        decode_image(data[: int(len(data) * keep)])
    assert not isinstance(info.value, MediaTooLargeError)


@pytest.mark.parametrize(
    "data",
    [
        seeded_rng(7).bytes(1001),
        b"Hello, this is a text file pretending to be a photo.\n" * 7,
        b"\xff\xd8",  # a JPEG marker and nothing else
    ],
    ids=["random", "text", "two-bytes"],
)
def test_non_images_are_unsupported(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaError, match="Not a recognised image"):
        decode_image(data)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(UnsupportedMediaError):
        decode_image(path)


def test_empty_bytes_are_unsupported() -> None:
    with pytest.raises(UnsupportedMediaError, match="Empty"):
        decode_image(b"")


def test_max_side_decodes_large_jpeg_at_reduced_scale() -> None:
    data = _photo_jpeg(1001, 517)
    full = decode_image(data)
    small = decode_image(data, max_side=100)
    assert full.size == (1001, 517)
    assert max(small.size) >= 200 and max(small.size) < 1001
    assert abs(small.size[0] / small.size[1] - 1001 / 517) < 0.05


@pytest.mark.parametrize("size", [17, 64])
def test_thumbnail_longest_side_and_aspect(size: int) -> None:
    src = _encode(_marked(301, 101), "PNG")
    thumb = Image.open(io.BytesIO(thumbnail(src, size=size)))
    assert thumb.format == "JPEG" and max(thumb.size) == size
    assert abs(thumb.size[0] / thumb.size[1] - 301 / 101) < 0.35


def test_thumbnail_never_upscales() -> None:
    thumb = Image.open(io.BytesIO(thumbnail(_marked(17, 7), size=256)))
    assert thumb.size == (17, 7)


@pytest.mark.parametrize(
    "head,mime",
    [
        (b"\xff\xd8\xff\xe0" + b"\x00" * 12, "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, "image/png"),
        (b"GIF87a" + b"\x00" * 8, "image/gif"),
        (b"GIF89a" + b"\x00" * 8, "image/gif"),
        (b"BM" + b"\x00" * 12 + (40).to_bytes(4, "little"), "image/bmp"),  # BITMAPINFOHEADER
        (b"II*\x00" + b"\x00" * 8, "image/tiff"),
        (b"MM\x00*" + b"\x00" * 8, "image/tiff"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
    ],
)
def test_sniff_image_magic(head: bytes, mime: str) -> None:
    assert sniff(head, "whatever.dat") == (Modality.IMAGE, mime)


@pytest.mark.parametrize(
    "head,name",
    [
        (b"BM is how this note starts, not a bitmap", "notes.dat"),
        ("hello".encode("utf-16"), "utf16.txt"),  # FF FE byte order mark, not an MPEG frame
    ],
)
def test_sniff_does_not_mistake_text_for_media(head: bytes, name: str) -> None:
    assert sniff(head, name) in (None, (Modality.TEXT, "text/plain"))


@pytest.mark.parametrize(
    "head,mime",
    [
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"OggS\x00\x02" + b"\x00" * 8, "audio/ogg"),
        (b"ID3\x04\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),  # MPEG-1 layer III frame sync, no ID3 tag
    ],
)
def test_sniff_audio_magic(head: bytes, mime: str) -> None:
    assert sniff(head, "clip.bin") == (Modality.AUDIO, mime)


def test_sniff_by_content_not_name() -> None:
    assert sniff(b"just some words", "notes.txt") == (Modality.TEXT, "text/plain")
    assert sniff(b"# title", "README.MD") == (Modality.TEXT, "text/plain")
    assert sniff(b"just some words", "photo.jpg") is None
    assert sniff(b"\xff\xd8\xff\xe0", "notes.txt") == (Modality.IMAGE, "image/jpeg")
    assert sniff(b"RIFF\x00\x00\x00\x00AVI LIST", "x.avi") is None
    assert sniff(b"", "") is None
    assert sniff(seeded_rng(1).bytes(64).replace(b"\xff", b"\x00"), "x.bin") is None


def test_read_regular_file_refuses_devices_fifos_and_folders(tmp_path: Path) -> None:
    """Finding 2: only regular files are read, and never more than the limit + 1 bytes."""
    import os
    import resource

    from retrieval.errors import MediaTooLargeError
    from retrieval.media.files import NotRegularFileError, read_head, read_regular_file

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(NotRegularFileError, match=r"not a regular file \(character device\)"):
        read_regular_file("/dev/zero", 50 * 1024 * 1024, what="image")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match=r"FIFO"):  # and the open does not hang
        read_regular_file(fifo, 1000)
    with pytest.raises(NotRegularFileError, match="directory"):
        read_head(tmp_path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\x00" * 1000)
    with pytest.raises(
        MediaTooLargeError,
        match="larger than the image limit of 1000 bytes; raise CROSSMEDIA_MAX_IMAGE_BYTES",
    ):
        read_regular_file(big, 1000, what="image", setting="CROSSMEDIA_MAX_IMAGE_BYTES")
    assert read_regular_file(big, 1003) == big.read_bytes()
    assert read_head(big, 3) == (b"\xff\xd8\xff", 1003)


def test_read_text_file_is_bounded_and_truncates(tmp_path: Path) -> None:
    """Finding 8: a text file is read up to limit*4+1 bytes and cut to the limit."""
    from retrieval.errors import MediaError
    from retrieval.media.files import read_text_file

    note = tmp_path / "note.txt"
    note.write_text("é" * 7 + "abc", encoding="utf-8")
    assert read_text_file(note, 11) == ("é" * 7 + "abc", False)
    assert read_text_file(note, 5) == ("é" * 5, True)
    note.write_text("€" * 20, encoding="utf-8")  # 3-byte characters, cut mid-character at 4*2
    assert read_text_file(note, 2) == ("€€", True)
    note.write_bytes(b"ok \xff")
    with pytest.raises(MediaError, match=r"not UTF-8 text \(byte 0xff at column 4\)"):
        read_text_file(note, 100)
