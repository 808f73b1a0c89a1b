"""The bad-input corpus, generated into a folder (no binary blobs in the repository): every kind
of file and manifest line an operator's data can hold that must be skipped with a reason, next
to good ones that must be indexed. Used by tests/test_bad_inputs.py and benchmarks/bad_inputs.py.

Layout under `root`: `set/items.jsonl` (manifest; its media in `set/m/`), `folder/` (a folder
source), `allowed/` (a root passed as --allow-outside), `elsewhere/` (outside every root).
The manifest run allows `allowed/` and `/dev` (so /dev/zero reaches the regular-file check
instead of the confinement check); the folder run allows nothing.

The unreadable cases (a file and a folder with mode 000) are left out when this process reads
anything anyway (root, or CAP_DAC_OVERRIDE): see `reads_anything`.
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HUGE = 200_000  # characters of the huge caption and text: 20x MAX_TEXT_CHARS, under a line's limit


@functools.cache
def reads_anything() -> bool:
    """True when this process can read a file of mode 000 (root, or CAP_DAC_OVERRIDE)."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.write_bytes(b"x")
        probe.chmod(0)
        try:
            probe.read_bytes()
        except PermissionError:
            return False
        return True


@dataclass(frozen=True)
class Case:
    source: str  # "manifest" or "folder"
    name: str  # what the input is
    where: str  # the report's `where`: items.jsonl:N, or the path inside the folder
    outcome: str  # "indexed", "truncated" (indexed, with a warning), "skipped" or "counted"
    word: str = ""  # a distinctive word of the reason or warning
    key: str = ""  # the stored key of an indexed input


@dataclass
class Corpus:
    root: Path
    manifest: Path
    folder: Path
    allow_outside: list[Path]  # for the manifest run
    cases: list[Case]


def media_bytes(seed: int = 3) -> dict[str, bytes]:
    """Good and broken media files, seeded."""
    import soundfile as sf
    from PIL import Image

    rng = np.random.default_rng(seed)

    def image(fmt: str) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).save(buf, format=fmt)
        return buf.getvalue()

    def sound(fmt: str) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000, format=fmt)
        return buf.getvalue()

    jpg, png, flac, wav = image("JPEG"), image("PNG"), sound("FLAC"), sound("WAV")
    return {
        "good.jpg": jpg,
        "good.png": png,
        "good.wav": wav,
        "other.jpg": image("JPEG"),
        "zero.jpg": b"",
        "text.jpg": b"I am a text file, not a photo.\n",
        "trunc.jpg": jpg[:300],
        "trunc.png": png[:500],
        "bomb.png": png_bomb_header(),
        "garbage.mp3": b"\xff\xfb\x90\x00" + rng.bytes(4001),
        "trunc.flac": flac[: len(flac) // 2],
        "trunc.wav": wav[: len(wav) // 2],
    }


def png_bomb_header(side: int = 100_000) -> bytes:
    """A valid PNG header claiming side x side pixels, with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _write_media(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in media_bytes().items():
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "fifo.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    if not reads_anything():
        (folder / "unreadable.jpg").write_bytes(media_bytes()["good.jpg"])
        (folder / "unreadable.jpg").chmod(0)


_MEDIA_CASES = [  # (file, field, what it is, outcome, word)
    ("good.jpg", "image", "good JPEG with captions", "indexed", ""),
    ("good.png", "image", "good PNG", "indexed", ""),
    ("good.wav", "audio", "good WAV", "indexed", ""),
    ("zero.jpg", "image", "zero-byte .jpg", "skipped", "Empty file"),
    ("text.jpg", "image", "text file named .jpg", "skipped", "Not a recognised image"),
    ("trunc.jpg", "image", "truncated JPEG", "skipped", "Truncated"),
    ("trunc.png", "image", "truncated PNG", "skipped", "truncated"),
    (
        "bomb.png",
        "image",
        "decompression-bomb PNG header (100000 x 100000)",
        "skipped",
        "decompression bomb",
    ),
    ("garbage.mp3", "audio", "garbage MP3", "skipped", "not a decodable audio file"),
    ("trunc.flac", "audio", "truncated FLAC", "skipped", "truncated"),
    ("trunc.wav", "audio", "truncated WAV", "skipped", "truncated"),
    ("fifo.jpg", "image", "FIFO named .jpg", "skipped", "FIFO"),
    ("loop.jpg", "image", "symlink loop", "skipped", "symlink loop"),
    ("dir.jpg", "image", "directory named .jpg", "skipped", "directory"),
    ("missing.jpg", "image", "missing file", "skipped", "No such file"),
    ("unreadable.jpg", "image", "unreadable file (chmod 000)", "skipped", "Permission denied"),
]


def _manifest_lines(root: Path) -> list[tuple[str, Any, str, str, str]]:
    """(what, JSON object or raw bytes, outcome, word, key) per manifest line."""
    rows: list[tuple[str, Any, str, str, str]] = []
    for file, field_name, what, outcome, word in _MEDIA_CASES:
        if file == "unreadable.jpg" and reads_anything():
            continue
        obj: dict[str, Any] = {"id": file, field_name: f"m/{file}"}
        if file == "good.jpg":
            obj["captions"] = ["a field of coloured noise", "noise"]
        rows.append((what, obj, outcome, word, file))
    secret = root / "elsewhere" / "secret.jpg"
    rows += [
        ("text-only item", {"id": "note", "text": "a short note"}, "indexed", "", "note"),
        (
            "path inside an --allow-outside root",
            {"id": "allowed", "image": str(root / "allowed" / "ok.jpg")},
            "indexed",
            "",
            "allowed",
        ),
        (
            "/dev/zero (with /dev allowed)",
            {"id": "devzero", "image": "/dev/zero"},
            "skipped",
            "character device",
            "",
        ),
        (
            "absolute path outside the roots",
            {"id": "abs", "image": str(secret)},
            "skipped",
            "--allow-outside",
            "",
        ),
        (
            "../ path outside the roots",
            {"id": "up", "image": "../elsewhere/secret.jpg"},
            "skipped",
            "outside",
            "",
        ),
        ("path with a NUL byte", {"id": "nul", "image": "m/a\x00.jpg"}, "skipped", "bad path", ""),
        ("non-UTF-8 line", b'{"id": "latin", "caption": "caf\xe9"}', "skipped", "not UTF-8", ""),
        (
            "lone surrogate escape in JSON",
            b'{"id": "s\\udce9", "caption": "x"}',
            "skipped",
            "lone surrogate",
            "",
        ),
        ("invalid JSON", b'{"id": "broken", "image": ', "skipped", "invalid JSON", ""),
        ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, "skipped", "nested too deeply", ""),
        (
            "huge caption (200,000 characters)",
            {"id": "huge-caption", "captions": ["c" * HUGE]},
            "truncated",
            "truncated",
            "huge-caption#caption0",
        ),
        (
            "huge text (200,000 characters)",
            {"id": "huge-text", "text": "t" * HUGE},
            "truncated",
            "truncated",
            "huge-text",
        ),
        (
            "huge id (2,000 characters)",
            {"id": "i" * 2000, "caption": "x"},
            "skipped",
            "too long",
            "",
        ),
        (
            "huge line (2 MiB)",
            {"id": "long", "caption": "z" * (2 << 20)},
            "skipped",
            "line longer",
            "",
        ),
        ("duplicate id", {"id": "good.png", "image": "m/other.jpg"}, "skipped", "duplicate", ""),
    ]
    return rows


def _build_manifest(root: Path) -> list[Case]:
    home = root / "set"
    _write_media(home / "m")
    (home / "m" / "dir.jpg").mkdir()
    for d, name in ((root / "allowed", "ok.jpg"), (root / "elsewhere", "secret.jpg")):
        d.mkdir()
        (d / name).write_bytes(media_bytes(seed=7)["good.jpg"])
    cases, raw = [], []
    for n, (what, obj, outcome, word, key) in enumerate(_manifest_lines(root), start=1):
        raw.append(obj if isinstance(obj, bytes) else json.dumps(obj).encode())
        cases.append(Case("manifest", what, f"items.jsonl:{n}", outcome, word, key))
    (home / "items.jsonl").write_bytes(b"\n".join(raw) + b"\n")
    return cases


def _build_folder(root: Path) -> list[Case]:
    folder = root / "folder"
    _write_media(folder)
    (folder / "dir.jpg").mkdir()  # a folder named like a photo is walked like any folder
    (folder / "dir.jpg" / "inner.jpg").write_bytes(media_bytes(seed=5)["good.jpg"])
    (folder / "note.txt").write_text("a short note\n", encoding="utf-8")
    (folder / "huge.txt").write_text("h" * HUGE, encoding="utf-8")
    (folder / "blank.txt").write_text("  \n", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "sidecar.xmp").write_text("<x:xmpmeta/>", encoding="utf-8")
    (folder / "out.jpg").symlink_to(root / "elsewhere" / "secret.jpg")
    (folder / "zero-device.jpg").symlink_to("/dev/zero")
    (folder / ".hidden.jpg").write_bytes(media_bytes()["good.jpg"])
    with open(os.fsencode(folder) + b"/caf\xe9.jpg", "wb") as f:  # a name that is not UTF-8
        f.write(media_bytes()["good.jpg"])
    if not reads_anything():
        (folder / "locked").mkdir()
        (folder / "locked" / "inside.jpg").write_bytes(media_bytes()["good.jpg"])
        (folder / "locked").chmod(0)
    res = folder.resolve()
    cases = [
        Case(
            "folder",
            what,
            file,
            outcome,
            word.replace("Empty file", "empty file").replace(
                "Not a recognised image", "not an image"
            ),
            str(res / file),
        )
        for file, _, what, outcome, word in _MEDIA_CASES
        if file not in ("dir.jpg", "missing.jpg")
        and not (file == "unreadable.jpg" and reads_anything())
    ]
    cases += [
        Case(
            "folder",
            "good JPEG in a folder named dir.jpg",
            "dir.jpg/inner.jpg",
            "indexed",
            "",
            str(res / "dir.jpg" / "inner.jpg"),
        ),
        Case("folder", "text file", "note.txt", "indexed", "", str(res / "note.txt")),
        Case(
            "folder",
            "huge text file (200,000 characters)",
            "huge.txt",
            "truncated",
            "truncated",
            str(res / "huge.txt"),
        ),
        Case("folder", "whitespace-only text file", "blank.txt", "skipped", "only whitespace"),
        Case("folder", "non-UTF-8 text file", "latin1.txt", "skipped", "not UTF-8"),
        Case("folder", "unsupported file type (.xmp)", "sidecar.xmp", "skipped", "unsupported"),
        Case("folder", "symlink out of the folder", "out.jpg", "skipped", "outside"),
        Case("folder", "symlink to /dev/zero", "zero-device.jpg", "skipped", "outside"),
        Case("folder", "hidden file (.hidden.jpg)", str(res), "counted", "hidden"),
        Case("folder", "file name not UTF-8", "caf\\xe9.jpg", "skipped", "not valid UTF-8"),
    ]
    if not reads_anything():
        cases.append(
            Case(
                "folder", "unreadable folder (chmod 000)", "locked", "skipped", "Permission denied"
            )
        )
    return cases


def build_corpus(root: Path) -> Corpus:
    root.mkdir(parents=True, exist_ok=True)
    cases = _build_manifest(root) + _build_folder(root)
    return Corpus(
        root, root / "set" / "items.jsonl", root / "folder", [root / "allowed", Path("/dev")], cases
    )


def outcomes(cases: Sequence[Case], reports: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """One row per case: what happened to it according to the ingest reports (to_json form)."""
    rows = []
    for c in cases:
        report = reports[c.source]
        failed = {f["where"]: f["reason"] for f in report["failed"]}
        warned: dict[str, str] = {}
        for w in report["warnings"]:
            warned[w["where"]] = "; ".join(filter(None, [warned.get(w["where"]), w["message"]]))
        if c.where in failed:
            got, detail = "skipped", failed[c.where]
        elif c.where in warned:
            got = "counted" if c.outcome == "counted" else "truncated"
            detail = warned[c.where]
        else:
            got, detail = "indexed", ""
        rows.append(
            {
                "source": c.source,
                "input": c.name,
                "where": c.where,
                "expected": c.outcome,
                "outcome": got,
                "detail": detail,
            }
        )
    return rows


class WithAudio:
    """An encoder plus a stand-in audio tower (a seeded vector per clip length), so audio files
    reach the decoder with a model that has no audio tower of its own."""

    def __init__(self, inner: Any) -> None:
        from retrieval.modality import Modality

        self._inner = inner
        self.modalities = frozenset(inner.modalities) | {Modality.AUDIO}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def describe_audio(self, clips: Sequence[Any], batch_size: int = 8) -> list[Any]:
        from retrieval.encoders.base import AudioDescription

        out = []
        for clip in clips:
            v = np.random.default_rng(len(clip.samples)).standard_normal(self.space.dim)
            out.append(AudioDescription((v / np.linalg.norm(v)).astype(np.float32)))
        return out


def corpus_outcomes(tmp: Path, encoder: Any) -> list[dict[str, str]]:
    """Build the corpus under `tmp`, index the manifest and the folder in-process, and say how
    each input ended."""
    from indexer.pipeline import Ingestor
    from indexer.sources import FolderSource, ManifestSource
    from retrieval.catalogue import Catalogue

    corpus = build_corpus(tmp)
    reports = {}
    for source in (
        ManifestSource(corpus.manifest, corpus.allow_outside),
        FolderSource(corpus.folder, allow_outside=()),
    ):
        data_dir = tmp / f"data-{'manifest' if isinstance(source, ManifestSource) else 'folder'}"
        with Catalogue.open(
            data_dir, db_url=f"sqlite:///{data_dir.resolve() / 'catalogue.db'}"
        ) as cat:
            report = Ingestor(cat, WithAudio(encoder), batch_size=7).ingest(source, progress=False)
        reports["manifest" if isinstance(source, ManifestSource) else "folder"] = report.to_json()
    return outcomes(corpus.cases, reports)
