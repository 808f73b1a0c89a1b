"""The layout every ingestion stage shares: `Entry` (one catalogue record), and the confinement
of media paths to a source's roots (`media_roots`, `confine`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import CrossmediaError
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
