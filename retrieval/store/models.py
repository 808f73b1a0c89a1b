"""SQLAlchemy 2 tables of a catalogue. The store is the source of truth: index files are derived
from the `vectors` table and can always be rebuilt from it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
IdType = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


class Meta(Base):
    """Key/value facts about the catalogue: schema version, embedding space."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(1024), unique=True)  # stable id from the source
    modality: Mapped[str] = mapped_column(String(8), index=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)  # absolute path or URI
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    mime: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Link(Base):
    """A media item and a text item that describes it (a caption, a transcript)."""

    __tablename__ = "links"
    media_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    text_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="caption")
    __table_args__ = (Index("ix_links_text", "text_id"),)


class Vector(Base):
    """One float32 vector per item, in the catalogue's embedding space."""

    __tablename__ = "vectors"
    item_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Segment(Base):
    """Per-window vectors of long audio, so a hit can say where in the file it matched."""

    __tablename__ = "segments"
    item_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float] = mapped_column(Float)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class TokenSet(Base):
    """A compact fp16 token set (n_tokens, dim) per item, read by the re-ranker."""

    __tablename__ = "token_sets"
    item_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    n_tokens: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class IngestError(Base):
    """A file that was skipped, and why; kept so `info` can report it after the run."""

    __tablename__ = "ingest_errors"
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(1024), index=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
