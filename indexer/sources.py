"""Sources turn a folder or a manifest into entries: one catalogue record (media + captions).

Layout shared by every stage: an `Entry` names its media files by absolute path and carries the
captions and attributes; a bad line or file becomes an entry with `error` set, so it is reported
with its line number or path instead of stopping the run. Nothing is skipped silently.

Media paths are confined: a manifest may name files inside its own folder, a folder walk reads
files inside the folder (symlinks are resolved first); other places need `allow_outside`
(`crossmedia index --allow-outside DIR`, or `$CROSSMEDIA_MEDIA_ROOTS`, os.pathsep-separated).
`source.media_roots` lists the folders a source may read from.
"""

from __future__ import annotations

import codecs
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from indexer.entries import Entry, SkipEntry, SourceError, confine, media_roots
from indexer.manifest import ManifestSource
from retrieval.errors import MediaError
from retrieval.limits import MAX_TEXT_CHARS
from retrieval.media.decode import MediaRef
from retrieval.media.files import read_head, read_text_file
from retrieval.media.sniff import sniff
from retrieval.modality import Modality

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
_AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus"}
__all__ = ["Entry", "FolderSource", "ManifestSource", "SourceError", "open_source"]


def open_source(
    path: Path | str, allow_outside: Sequence[Path] | None = None
) -> FolderSource | ManifestSource:
    p = Path(path).expanduser()
    if p.is_dir():
        return FolderSource(p, allow_outside)
    if p.is_file() and p.suffix.lower() in {".jsonl", ".csv"}:
        return ManifestSource(p, allow_outside)
    if p.is_file():
        raise SourceError(
            f"{p} is a file but not a manifest. Pass a folder, an items.jsonl or a .csv manifest."
        )
    raise SourceError(f"Source {p} does not exist. Pass a folder or an items.jsonl manifest.")


class FolderSource:
    """Every file under `root` (recursive, sorted) recognised as media by its content.

    Hidden names (starting with '.') are not walked; their count is in `notes`. Every other file
    that is not indexable is an entry with its reason.
    """

    def __init__(
        self,
        root: Path,
        allow_outside: Sequence[Path] | None = None,
        max_text_chars: int = MAX_TEXT_CHARS,
    ) -> None:
        self.root = root.resolve()
        self.name = str(self.root)
        self.media_roots = media_roots(self.root, allow_outside)
        self.max_text_chars = max_text_chars
        self.hidden = 0

    @property
    def notes(self) -> list[tuple[str, str]]:
        """Source-level remarks for the ingest report's warnings."""
        if not self.hidden:
            return []
        return [
            (
                self.name,
                f"{self.hidden} hidden files or folders (names starting with '.') not indexed",
            )
        ]

    @functools.cached_property
    def _files(self) -> list[Path]:
        # The progress bar needs the count before the walk: list the tree once, not twice.
        return self.files()

    def files(self) -> list[Path]:
        """Files and symlinked folders (reported, not followed), hidden names left out."""
        out: list[Path] = []
        self.hidden = 0
        # A folder that cannot be listed is kept as an entry: reading it then says why.
        for dirpath, dirnames, filenames in os.walk(
            self.root, onerror=lambda e: out.append(Path(e.filename))
        ):
            here = Path(dirpath)
            self.hidden += sum(n.startswith(".") for n in dirnames + filenames)
            links = [d for d in dirnames if not d.startswith(".") and (here / d).is_symlink()]
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in links)
            out.extend(here / n for n in sorted(filenames + links) if not n.startswith("."))
        return out

    def origin(self, where: str) -> str:
        """What an item records as its source: the file's absolute path (`sync` reads it)."""
        return str(self.root / where)

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[Entry]:
        for path in self._files:
            rel = str(path.relative_to(self.root))
            if not _is_utf8(rel):  # the store holds text: such a name cannot be a key or a path
                shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
                yield Entry(
                    key=str(self.root / shown),
                    where=shown,
                    error="file name is not valid UTF-8: rename the file to index it",
                )
                continue
            try:
                yield self._entry(path, rel)
            except SkipEntry as exc:
                yield Entry(key=str(path), where=rel, error=str(exc))
            except MediaError as exc:
                yield Entry(key=str(path), where=rel, error=str(exc).replace(f"{path}: ", ""))
            except (OSError, RuntimeError, ValueError) as exc:
                reason = getattr(exc, "strerror", None) or exc
                yield Entry(key=str(path), where=rel, error=f"unreadable: {reason}")

    def _entry(self, path: Path, rel: str) -> Entry:
        if path.is_symlink():
            target = confine(path, self.media_roots, "symlink", rel)
            if target.is_dir():
                raise SkipEntry("symlink to a folder: not followed; index that folder itself")
        head, size = read_head(path)
        if size == 0:
            raise SkipEntry("empty file (0 bytes)")
        kind = sniff(head, path.name)
        if kind is None:
            raise SkipEntry(not_media_reason(path, head))
        modality, mime = kind
        if modality != Modality.TEXT:
            return Entry(
                key=str(path),
                media=[MediaRef(modality, path, mime)],
                where=rel,
                attrs={"file": rel},
            )
        text, truncated = read_text_file(path, self.max_text_chars)
        if not text.strip():
            raise SkipEntry("text file holds only whitespace: nothing to index")
        e = Entry(key=str(path), text=text.strip(), where=rel, attrs={"file": rel})
        if truncated:
            e.warnings.append(f"text truncated to its first {self.max_text_chars} characters")
        return e


def not_media_reason(path: Path, head: bytes) -> str:
    """Why a file whose first bytes match no supported format is skipped."""
    try:
        sample = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        content = "text" if "\x00" not in sample else "binary data"
    except UnicodeDecodeError:
        content = "binary data"
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return f"named {suffix} but the content is {content}, not an image"
    if suffix in _AUDIO_SUFFIXES:
        return f"named {suffix} but the content is {content}, not a supported audio format"
    return (
        f"unsupported file type ({suffix or 'no extension'}, content is {content}): "
        "not an image, audio, .txt or .md file"
    )


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
