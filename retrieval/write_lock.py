"""The one writer discipline of a data directory: an exclusive `flock` on `.write.lock`.

`crossmedia index` holds it for a whole run (taken before the model loads, so the first command
started wins); the API server takes it around each upload or delete; a reader that repaired an
index in memory saves the repair only if it can take the lock at once. Whoever takes the lock
first removes stale temp files: nobody else can be writing one then. The lock is re-entrant for
the thread that holds it and released when its process dies, so a `kill -9` never leaves it held.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retrieval.errors import CatalogueBusyError
from retrieval.fsutil import remove_stale_temps

LOCK_FILE = ".write.lock"


class WriteLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None
        self._owner: int | None = None  # thread id of the holder
        self._depth = 0
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        """True when the calling thread holds the lock."""
        return self._fd is not None and self._owner == threading.get_ident()

    def acquire(self, timeout: float = 0.0) -> None:
        """Take the lock (waiting up to `timeout` seconds), or raise CatalogueBusyError."""
        if not self.try_acquire(timeout):
            holder = self._holder()
            raise CatalogueBusyError(
                f"Another process is writing to {self.data_dir}{holder}. Wait for it to finish "
                "(or stop it) and retry; the catalogue stays consistent either way."
            )

    def try_acquire(self, timeout: float = 0.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            with self._mutex:
                if self.held:
                    self._depth += 1
                    return True
                if self._fd is None and self._try_flock():
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _try_flock(self) -> bool:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd, self._owner, self._depth = fd, threading.get_ident(), 1
        try:  # the holder's pid, for the message a second writer gets; not needed on a full disk
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError:
            pass
        for folder in (self.data_dir / "index", self.data_dir):
            remove_stale_temps(folder)
        return True

    def release(self) -> None:
        with self._mutex:
            if not self.held:
                return
            self._depth -= 1
            if self._depth == 0:
                fd, self._fd, self._owner = self._fd, None, None
                assert fd is not None
                os.close(fd)

    def release_all(self) -> None:
        """Drop the lock whatever the depth (closing the catalogue)."""
        while self.held:
            self.release()

    @contextmanager
    def holding(self, timeout: float) -> Iterator[None]:
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

    def _holder(self) -> str:
        try:
            pid = (self.data_dir / LOCK_FILE).read_text().strip()
        except OSError:
            return ""
        return f" (pid {pid})" if pid.isdigit() else ""
