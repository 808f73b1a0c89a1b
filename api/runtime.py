"""Everything a request needs from the runtime, loaded once per process in the app's lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from api.settings import Settings

if TYPE_CHECKING:
    from indexer.pipeline import Ingestor
    from retrieval.catalogue import Catalogue
    from retrieval.encoders import Encoder
    from retrieval.search import SearchService

log = logging.getLogger("crossmedia.api")


class ReadWriteLock:
    """Many concurrent searches, or one writer (upload/delete) that changes the indexes.

    Writers are preferred so a stream of searches cannot starve an upload forever.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class Runtime:
    catalogue: Catalogue
    encoder: Encoder
    search: SearchService
    ingestor: Ingestor
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)

    @classmethod
    def load(cls, settings: Settings) -> Runtime:
        """Open the catalogue and build the model stack; errors say what to fix."""
        from api.media import media_limits
        from indexer.pipeline import Ingestor
        from retrieval.catalogue import Catalogue
        from retrieval.encoders import DEFAULT_MODEL, create_encoder
        from retrieval.rerank import select_reranker
        from retrieval.search import SearchService

        catalogue = Catalogue.open(
            settings.data_dir, db_url=settings.db_url, create=settings.create_catalogue
        )
        try:
            space = catalogue.space
            encoder = create_encoder(settings.model or (space.model if space else DEFAULT_MODEL))
            reranker = select_reranker(settings.reranker, encoder)
            search = SearchService(catalogue, encoder, reranker=reranker)
            ingestor = Ingestor(catalogue, encoder, limits=media_limits(settings))
        except BaseException:
            catalogue.close()
            raise
        log.info("catalogue %s opened: %s", settings.data_dir, catalogue.counts())
        return cls(catalogue=catalogue, encoder=encoder, search=search, ingestor=ingestor)

    def close(self) -> None:
        with self.lock.write():
            self.catalogue.close()
