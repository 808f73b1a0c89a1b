"""Manifests: items.jsonl (one JSON object per line) or a CSV with the same column names.

Fields: `id`, `image` and/or `audio` (paths relative to the manifest, confined to its folder
unless `allow_outside` names more roots), `captions` (list) or `caption`, `text` (a text-only
item); every other field is kept as an attribute.

The manifest is read as bytes and decoded line by line, each line at most
MAX_MANIFEST_LINE_BYTES long, so a line that is not UTF-8, not JSON or absurdly long is one
skipped entry with its line number, never an aborted run.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from indexer.entries import Entry, SkipEntry, SourceError, confine, media_roots
from retrieval.limits import MAX_MANIFEST_LINE_BYTES
from retrieval.media.decode import MediaRef
from retrieval.media.files import describe_decode_error
from retrieval.modality import Modality

_RESERVED = {"id", "image", "audio", "captions", "caption", "text"}
_CHUNK = 1024 * 1024
Row = tuple[int, dict[str, Any] | None, str | None]  # (line number, fields, error)


class ManifestSource:
    def __init__(self, path: Path, allow_outside: Sequence[Path] | None = None) -> None:
        self.path = path.resolve()
        self.base = self.path.parent
        self.name = str(self.path)
        self.media_roots = media_roots(self.base, allow_outside)
        self.notes: list[tuple[str, str]] = []
        self._csv = self.path.suffix.lower() == ".csv"

    def origin(self, where: str) -> str:
        """What an item records as its source: the manifest's absolute path and line (`where`
        is `items.jsonl:N`), so `sync` can tell this manifest's items from another's."""
        return str(self.base / where)

    def __len__(self) -> int:
        """Non-blank lines (minus the CSV header), counted in bounded chunks."""
        n, blank = 0, True
        with self._open() as f:
            while chunk := f.read(_CHUNK):
                for i, part in enumerate(chunk.split(b"\n")):
                    if i > 0:
                        n, blank = n + (not blank), True
                    blank = blank and not part.strip()
        n += not blank
        return max(n - 1, 0) if self._csv else n

    def __iter__(self) -> Iterator[Entry]:
        with self._open() as f:
            for n, obj, error in self._csv_rows(f) if self._csv else self._json_rows(f):
                where = f"{self.path.name}:{n}"
                if obj is None:
                    yield Entry(key=f"{self.name}:{n}", where=where, error=error)
                    continue
                try:
                    yield self._entry(obj, where)
                except (SkipEntry, OSError, RuntimeError, ValueError) as exc:
                    key = str(obj.get("id", f"{self.name}:{n}"))
                    yield Entry(key=key, where=where, error=str(exc))

    def _open(self) -> IO[bytes]:
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise SourceError(f"Cannot read manifest {self.path}: {exc}") from exc

    def _json_rows(self, f: IO[bytes]) -> Iterator[Row]:
        for n, line, error in manifest_lines(f):
            if line is None:
                yield n, None, error
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
                continue
            except RecursionError:
                yield n, None, "invalid JSON (nested too deeply)"
                continue
            if not isinstance(obj, dict):
                yield n, None, "a manifest line must be a JSON object"
                continue
            try:  # "\udce9" is valid JSON but not text: the store could not hold it
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as exc:
                yield (
                    n,
                    None,
                    (
                        f"a string holds a lone surrogate ({exc.object[exc.start]!a}), "
                        "which is not text; fix the line's escapes"
                    ),
                )
                continue
            yield n, obj, None

    def _csv_rows(self, f: IO[bytes]) -> Iterator[Row]:
        bad: dict[int, str] = {}

        def lines() -> Iterator[str]:
            for n, line, error in manifest_lines(f):
                if line is None:
                    bad[n] = str(error)
                yield line if line is not None else ""

        reader = csv.reader(lines())
        header: list[str] | None = None
        last = 0
        while True:
            try:
                row = next(reader, None)
                error = None
            except csv.Error as exc:
                row, error = [], f"invalid CSV ({exc})"
            start, last = last + 1, reader.line_num
            errors = [bad.pop(k) for k in sorted(bad) if k <= last]
            if row is None:
                break
            if header is None:
                if errors or error:
                    raise SourceError(f"Cannot read the header of {self.path}: {errors or error}")
                header = [h.strip() for h in row]
                continue
            if errors or error:
                yield start, None, errors[0] if errors else error
            elif any(v.strip() for v in row):
                yield start, _csv_fields(header, row), None

    def _entry(self, obj: dict[str, Any], where: str) -> Entry:
        key = str(obj.get("id", where))
        media: list[MediaRef] = []
        for field_name, modality in (("image", Modality.IMAGE), ("audio", Modality.AUDIO)):
            rel = obj.get(field_name)
            if rel is None:
                continue
            if not isinstance(rel, str) or not rel:
                return Entry(
                    key=key, where=where, error=f"field {field_name!r} must be a path string"
                )
            path = confine(self.base / rel, self.media_roots, f"{field_name} path", rel)
            media.append(MediaRef(modality, path))
        captions = obj.get("captions", obj.get("caption", []))
        if isinstance(captions, str):
            captions = [captions]
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            return Entry(key=key, where=where, error="'captions' must be a list of strings")
        text = obj.get("text")
        if text is not None and not isinstance(text, str):
            return Entry(key=key, where=where, error="'text' must be a string")
        if not media and not text and not captions:
            return Entry(
                key=key, where=where, error="no 'image', 'audio', 'text' or 'captions' field"
            )
        if obj.get("id") is None:
            key = str(media[0].path) if media else f"{self.name}:{where}"
        attrs = {k: v for k, v in obj.items() if k not in _RESERVED}
        return Entry(
            key=key,
            media=media,
            captions=[c.strip() for c in captions if c.strip()],
            text=text,
            attrs=attrs,
            where=where,
        )


def manifest_lines(
    f: IO[bytes], max_bytes: int = MAX_MANIFEST_LINE_BYTES
) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, None) per line, or (line number, None, reason) for a line that is
    longer than `max_bytes` or not UTF-8. A UTF-8 byte order mark on line 1 is dropped."""
    n = 0
    while line := f.readline(max_bytes + 1):
        n += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while (rest := f.readline(_CHUNK)) and not rest.endswith(b"\n"):
                pass  # the rest of the overlong line, read in bounded pieces
            yield (
                n,
                None,
                (
                    f"line longer than {max_bytes} bytes: refused (one manifest line is "
                    "one item; keep long text in a .txt file)"
                ),
            )
            continue
        if n == 1 and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8) :]  # spreadsheets write one
        try:
            yield n, line.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            yield n, None, f"not UTF-8 ({describe_decode_error(exc)}); save the manifest as UTF-8"


def _csv_fields(header: list[str], row: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in zip(header, row, strict=False) if k and v != ""}
    caps = data.pop("captions", "")
    if caps:
        data["captions"] = [c.strip() for c in caps.split("|") if c.strip()]
    return data
