"""The layout every ingestion stage shares: `Entry` (one catalogue record), and the confinement
of media paths to a source's roots (`media_roots`, `confine`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import CrossmediaError
from retrieval.limits import MAX_KEY_CHARS
from retrieval.media.decode import MediaRef

MEDIA_ROOTS_ENV = "CROSSMEDIA_MEDIA_ROOTS"


@dataclass
class Entry:
    key: str
    media: list[MediaRef] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    text: str | None = None  # a standalone text item (a .txt file)
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # file:line, for messages
    error: str | None = None
    warnings: list[str] = field(default_factory=list)  # indexed, but changed (e.g. truncated)


class SourceError(CrossmediaError):
    """The source itself cannot be read (missing folder, unreadable manifest)."""


class SkipEntry(Exception):
    """One entry cannot be indexed; the message is its reason."""


def media_roots(home: Path, allow_outside: Sequence[Path] | None) -> list[Path]:
    """`home` (resolved) then the extra roots: `allow_outside`, or $CROSSMEDIA_MEDIA_ROOTS."""
    if allow_outside is None:
        env = os.environ.get(MEDIA_ROOTS_ENV, "")
        allow_outside = [Path(p) for p in env.split(os.pathsep) if p.strip()]
    roots = [home.resolve()]
    for extra in allow_outside:
        root = Path(extra).expanduser().resolve()
        if root not in roots:
            roots.append(root)
    return roots


def confine(path: Path, roots: list[Path], what: str, shown: str) -> Path:
    """`path` with symlinks resolved, if it lies inside one of `roots`; else SkipEntry."""
    try:
        resolved = path.resolve()
    except RuntimeError as exc:  # Python < 3.13 raises RuntimeError on a loop
        raise SkipEntry(f"{what} {shown!r}: symlink loop ({exc})") from exc
    except (OSError, ValueError) as exc:
        raise SkipEntry(f"{what} {shown!r}: bad path ({exc})") from exc
    if not any(resolved.is_relative_to(root) for root in roots):
        raise SkipEntry(
            f"{what} {shown!r} resolves to {resolved}, outside {roots[0]}: refused. Pass "
            "--allow-outside DIR (or set $CROSSMEDIA_MEDIA_ROOTS) to index files from DIR."
        )
    return resolved


def check_limits(e: Entry, keys: list[str], max_text_chars: int) -> None:
    """Refuse an entry whose stored `keys` do not fit the store; cut captions and text longer
    than `max_text_chars`, with a warning each."""
    longest = max(keys, key=len, default="")
    if len(longest) > MAX_KEY_CHARS:
        e.error = (
            f"id of {len(e.key)} characters is too long: the stored keys (with suffixes "
            f"like '#caption3') must fit {MAX_KEY_CHARS} characters"
        )
        return
    for i, cap in enumerate(e.captions):
        if len(cap) > max_text_chars:
            e.captions[i] = cap[:max_text_chars]
            e.warnings.append(
                f"caption {i} truncated from {len(cap)} to {max_text_chars} characters"
            )
    if e.text is not None and len(e.text) > max_text_chars:
        e.warnings.append(f"text truncated from {len(e.text)} to {max_text_chars} characters")
        e.text = e.text[:max_text_chars]


def error_key(key: str) -> str:
    """A key that fits the errors table: an overlong id is cut and marked with its hash."""
    if len(key) <= MAX_KEY_CHARS:
        return key
    return f"{key[: MAX_KEY_CHARS - 80]}...sha256:{hashlib.sha256(key.encode()).hexdigest()}"
