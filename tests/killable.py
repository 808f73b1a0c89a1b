"""Run the `crossmedia` CLI in this process, optionally killing itself with SIGKILL at the N-th
atomic file replace (after the temp file is written and fsynced, before the rename): a crash in
the middle of saving an index file, an index record or an uploaded media file, on purpose.

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
    real_replace = os.replace

    def replace(src, dst, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        nonlocal calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *a, **kw)

    os.replace = replace  # type: ignore[assignment]
    sys.argv = ["crossmedia", *sys.argv[3:]]
    from api.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
