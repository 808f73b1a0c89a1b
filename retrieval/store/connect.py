"""SQLAlchemy engines for the store: SQLite in WAL mode by default, any URL otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable against a killed process in WAL mode (only power loss can drop the
    # last commits); FULL would fsync every commit for no gain against kill -9.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def read_only_sqlite_engine(path: Path) -> Engine:
    """An immutable, read-only view of a SQLite file: needs no -wal/-shm files (so it opens on
    a full disk), and is only safe while nobody commits (which a full disk prevents)."""
    return create_engine(f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true")
