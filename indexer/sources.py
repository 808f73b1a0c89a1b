"""Sources turn a folder or a manifest into entries: one catalogue record (media + captions).

Layout shared by every stage: an `Entry` names its media files by absolute path and carries the
captions and attributes; bad manifest lines become entries with `error` set, so they are reported
with their line number instead of stopping the run.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.media.decode import MediaRef
from retrieval.errors import CrossmediaError
from retrieval.media.sniff import sniff_file
from retrieval.modality import Modality

_RESERVED = {"id", "image", "audio", "captions", "caption", "text"}


@dataclass
class Entry:
    key: str
    media: list[MediaRef] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    text: str | None = None  # a standalone text item (a .txt file)
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # file:line, for messages
    error: str | None = None


class SourceError(CrossmediaError):
    """The source itself cannot be read (missing folder, unreadable manifest)."""


def open_source(path: Path | str) -> FolderSource | ManifestSource:
    p = Path(path).expanduser()
    if p.is_dir():
        return FolderSource(p)
    if p.is_file() and p.suffix.lower() in {".jsonl", ".csv"}:
        return ManifestSource(p)
    if p.is_file():
        raise SourceError(
            f"{p} is a file but not a manifest. Pass a folder, an items.jsonl or a .csv manifest."
        )
    raise SourceError(f"Source {p} does not exist. Pass a folder or an items.jsonl manifest.")


class FolderSource:
    """Every file under `root` (recursive, sorted) recognised as media by its content."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.name = str(self.root)

    @functools.cached_property
    def _files(self) -> list[Path]:
        # The progress bar needs the count before the walk: list the tree once, not twice.
        return self.files()

    def files(self) -> list[Path]:
        out: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
        return out

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[Entry]:
        for path in self._files:
            try:
                kind = sniff_file(path)
            except OSError as exc:
                yield Entry(key=str(path), where=str(path), error=f"unreadable: {exc}")
                continue
            if kind is None:
                continue  # not media: folders hold sidecar files, thumbnails of other tools, ...
            modality, mime = kind
            rel = str(path.relative_to(self.root))
            if modality == Modality.TEXT:
                try:
                    text = path.read_text(encoding="utf-8").strip()
                except (UnicodeDecodeError, OSError) as exc:
                    yield Entry(key=str(path), where=rel, error=f"not UTF-8 text: {exc}")
                    continue
                if text:
                    yield Entry(key=str(path), text=text, where=rel, attrs={"file": rel})
                continue
            yield Entry(key=str(path), media=[MediaRef(modality, path, mime)], where=rel,
                        attrs={"file": rel})


class ManifestSource:
    """items.jsonl (one JSON object per line) or a CSV with the same column names.

    Fields: `id`, `image` and/or `audio` (paths relative to the manifest), `captions` (list) or
    `caption`, `text` (a text-only item); every other field is kept as an attribute.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.base = self.path.parent
        self.name = str(self.path)

    def __len__(self) -> int:
        with self.path.open("rb") as f:
            n = sum(1 for line in f if line.strip())
        return n - 1 if self.path.suffix.lower() == ".csv" else n

    def _rows(self) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        try:
            f = self.path.open(encoding="utf-8-sig", newline="")  # tolerate a BOM (spreadsheets)
        except OSError as exc:
            raise SourceError(f"Cannot read manifest {self.path}: {exc}") from exc
        with f:
            if self.path.suffix.lower() == ".csv":
                for n, row in enumerate(csv.DictReader(f), start=2):
                    caps = row.pop("captions", "") or ""
                    data: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
                    if caps:
                        data["captions"] = [c.strip() for c in caps.split("|") if c.strip()]
                    yield n, data, None
                return
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield n, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
                    continue
                if not isinstance(obj, dict):
                    yield n, None, "a manifest line must be a JSON object"
                    continue
                yield n, obj, None

    def __iter__(self) -> Iterator[Entry]:
        for n, obj, error in self._rows():
            where = f"{self.path.name}:{n}"
            if obj is None:
                yield Entry(key=f"{self.name}:{n}", where=where, error=error)
                continue
            yield self._entry(obj, where)

    def _entry(self, obj: dict[str, Any], where: str) -> Entry:
        media: list[MediaRef] = []
        for field_name, modality in (("image", Modality.IMAGE), ("audio", Modality.AUDIO)):
            rel = obj.get(field_name)
            if rel is None:
                continue
            if not isinstance(rel, str) or not rel:
                return Entry(key=str(obj.get("id", where)), where=where,
                             error=f"field {field_name!r} must be a path string")
            media.append(MediaRef(modality, (self.base / rel).resolve()))
        captions = obj.get("captions", obj.get("caption", []))
        if isinstance(captions, str):
            captions = [captions]
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            return Entry(key=str(obj.get("id", where)), where=where,
                         error="'captions' must be a list of strings")
        text = obj.get("text")
        if text is not None and not isinstance(text, str):
            return Entry(key=str(obj.get("id", where)), where=where, error="'text' must be a string")
        if not media and not text and not captions:
            return Entry(key=str(obj.get("id", where)), where=where,
                         error="no 'image', 'audio', 'text' or 'captions' field")
        key = obj.get("id")
        if key is None:
            key = str(media[0].path) if media else f"{self.name}:{where}"
        attrs = {k: v for k, v in obj.items() if k not in _RESERVED}
        return Entry(key=str(key), media=media, captions=[c.strip() for c in captions if c.strip()],
                     text=text, attrs=attrs, where=where)
