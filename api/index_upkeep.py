"""Index upkeep in a running server: when uploads grow a modality past what its index type
suits (`retrieval.index_choice`), the new index is built in a background thread from a snapshot
of the store, while searches and uploads go on with the old one; installing it takes the write
lock only to catch up with the rows written meanwhile and to save it."""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager
from typing import Any, Protocol

log = logging.getLogger("crossmedia.api")
INSTALL_WAIT_S = 60.0  # seconds the install waits for another process's write lock


class Runtime(Protocol):  # api.runtime.Runtime, as far as upkeep needs it
    catalogue: Any
    lock: Any  # its ReadWriteLock: `read()` holds writes off

    def writing(self, timeout_s: float) -> AbstractContextManager[None]: ...


class IndexUpkeep:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last: dict[str, str] = {}  # modality -> what the last upkeep did, for diagnostics

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check(self, runtime: Runtime) -> None:
        """After a write: start a rebuild for every modality whose index type no longer fits
        (one upkeep thread at a time)."""
        from retrieval.index_choice import wanted_change
        from retrieval.modality import ALL_MODALITIES

        with self._guard:
            if self.busy:
                return
            with runtime.lock.read():
                wants = {m: wanted_change(runtime.catalogue, m) for m in map(str, ALL_MODALITIES)}
            todo = {m: f for m, f in wants.items() if f}
            if todo:
                self._thread = threading.Thread(
                    target=self._run, args=(runtime, todo), name="index-upkeep", daemon=True
                )
                self._thread.start()

    def _run(self, runtime: Runtime, todo: dict[str, str]) -> None:
        from retrieval.index_choice import build_for

        for modality, factory in todo.items():
            try:
                index, tuning = build_for(runtime.catalogue, modality, factory)
                with runtime.writing(INSTALL_WAIT_S):
                    runtime.catalogue.save_index(modality, index, tuning)
            except Exception as exc:  # the server goes on with the old index; say why
                self.last[modality] = f"kept the old index: {exc}"
                log.warning("%s index upkeep to %s failed: %s", modality, factory, exc)
                continue
            self.last[modality] = f"moved to {factory}"
            log.info("%s index moved to %s (%s)", modality, factory, tuning)

    def wait(self, timeout: float | None = None) -> None:
        """For tests and shutdown: wait for a running upkeep to finish."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
