"""Everything a request needs from the runtime, loaded once per process in the app's lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from api.index_upkeep import INSTALL_WAIT_S, IndexUpkeep
from api.settings import Settings

if TYPE_CHECKING:
    from indexer.pipeline import Ingestor
    from retrieval.catalogue import Catalogue
    from retrieval.encoders import Encoder
    from retrieval.search import SearchService

log = logging.getLogger("crossmedia.api")


class ReadWriteLock:
    """Many concurrent searches, or one writer (upload/delete) that changes the indexes.

    Phase-fair: a reader that arrives while a writer holds or awaits the lock waits for the end of
    that writer; when a writer releases, every reader waiting then is let in before the next
    writer (who waits for them to finish). So a reader waits for at most one writer, a writer
    waits for at most one batch of readers per writer ahead of it (writers go in arrival order),
    and neither side can starve the other.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0  # active readers
        self._writer = False  # a writer is active
        self._blocked_readers = 0  # readers waiting for the current writer phase to end
        self._phase = 0  # +1 each time a writer releases and admits the blocked readers
        self._tickets = 0  # writers that have arrived
        self._serving = 0  # the ticket whose turn it is

    @property
    def waiting(self) -> tuple[int, int]:
        """(readers, writers) waiting now; for tests and diagnostics."""
        with self._cond:
            writers = self._tickets - self._serving - (1 if self._writer else 0)
            return self._blocked_readers, writers

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            if self._writer or self._tickets != self._serving:
                phase = self._phase
                self._blocked_readers += 1
                while self._phase == phase:  # the releasing writer counts us in
                    self._cond.wait()
            else:
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
            ticket = self._tickets
            self._tickets += 1
            while self._serving != ticket or self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._serving += 1
                self._readers += self._blocked_readers  # admitted before the next writer
                self._blocked_readers = 0
                self._phase += 1
                self._cond.notify_all()


@dataclass
class Runtime:
    catalogue: Catalogue
    encoder: Encoder
    search: SearchService
    ingestor: Ingestor
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)
    upkeep: IndexUpkeep = field(default_factory=IndexUpkeep)

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

    @contextmanager
    def writing(self, timeout_s: float) -> Iterator[None]:
        """Exclusive access for one write: the catalogue's write lock first (waiting up to
        `timeout_s` for another process, CatalogueBusyError after; searches go on meanwhile),
        then the in-process lock that holds searches off while the indexes change."""
        with self.catalogue.lock.holding(timeout_s), self.lock.write():
            yield
        self.upkeep.check(self)  # the index type may no longer fit the catalogue's size

    def close(self) -> None:
        self.upkeep.wait(INSTALL_WAIT_S)
        with self.lock.write():
            self.catalogue.close()
