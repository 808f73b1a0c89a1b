"""Metadata store: items, caption links, vectors and token sets in one SQL database."""

from retrieval.store.records import ItemRecord, NewItem, WriteResult
from retrieval.store.store import Store

__all__ = ["ItemRecord", "NewItem", "Store", "WriteResult"]
