"""Exception types shared by the engine. Each message says what went wrong and how to fix it."""

from __future__ import annotations


class CrossmediaError(Exception):
    """Base class for every error the engine raises on purpose."""


class MediaError(CrossmediaError):
    """A media file could not be used (corrupt, truncated, too large, unsupported)."""


class UnsupportedMediaError(MediaError):
    """The bytes are not a media type we can decode."""


class MediaTooLargeError(MediaError):
    """The file exceeds a configured limit (bytes, pixels, seconds)."""


class ModelUnavailableError(CrossmediaError):
    """A model's weights cannot be obtained on this machine."""


class UnknownModelError(CrossmediaError, KeyError):
    """No encoder, index type or re-ranker is registered under that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SpaceMismatchError(CrossmediaError):
    """A query or ingestion uses another embedding space than the catalogue was built in."""


class CatalogueError(CrossmediaError):
    """The data directory is missing, locked or inconsistent."""


class CatalogueBusyError(CatalogueError):
    """Another process holds the catalogue's write lock (it is indexing or serving uploads)."""


class StorageFullError(CrossmediaError):
    """The disk (or database) holding the catalogue is full; nothing of the failed write was
    committed."""
