"""Size limits shared by ingestion and the API, so a text is held to one rule wherever it enters.

`MAX_TEXT_CHARS`: a caption, a manifest `text` field or a `.txt` file longer than this is
truncated to it at ingestion (with a warning in the ingest report); a longer query is refused by
the API. Embedding models read a few hundred tokens at most, so nothing searchable is lost.
`MAX_KEY_CHARS`: the width of the store's `items.key` column; derived keys (`id#caption3`,
`id#audio`) must fit too.
"""

from __future__ import annotations

MAX_TEXT_CHARS = 10_000
MAX_KEY_CHARS = 1024  # retrieval/store/models.py: Item.key = String(1024)
MAX_MANIFEST_LINE_BYTES = 1024 * 1024  # one JSON line or CSV line of a manifest
