"""Run the `crossmedia` CLI in this process, optionally killing itself with SIGKILL at the N-th
save step: an `os.fsync` (a temp file or an index delta written, not yet durable or committed)
or an `os.replace` (a temp file durable, not yet renamed into place). A crash in the middle of
saving an index file, an index delta, an index record or an uploaded media file, on purpose.

    python tests/killable.py N -- index ITEMS --data-dir D ...     (N = 0: never)

Used by the kill -9 campaign (tests/test_kill_campaign.py, benchmarks/kill_campaign.py)."""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    kill_at = int(sys.argv[1])
    assert sys.argv[2] == "--", "usage: killable.py N -- crossmedia args"
    calls = 0

    def save_step(real):  # noqa: ANN001, ANN202
        def step(*a, **kw):  # noqa: ANN002, ANN003, ANN202
            nonlocal calls
            calls += 1
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **kw)

        return step

    os.replace = save_step(os.replace)  # type: ignore[assignment]
    os.fsync = save_step(os.fsync)  # type: ignore[assignment]
    sys.argv = ["crossmedia", *sys.argv[3:]]
    from api.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
