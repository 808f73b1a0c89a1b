"""`crossmedia index SOURCE --sync`: remove the items whose source file or manifest entry is gone.

Which items belong to a source:
- a folder: items keyed by a file path under the folder, written by a folder walk (their
  `source` is that path; catalogues from before this version: `attrs.file` is the path's tail).
  One is removed when its file no longer exists.
- a manifest: items whose `source` is this manifest (`/abs/items.jsonl:LINE`). One is removed
  when no entry of the manifest owns its key any more (its line was deleted, its id changed, its
  caption list shortened), or when its media file is gone (with the entry's captions once none
  of its media is left). Items of a line that cannot be read now are kept: a typo is not a
  deletion.
Uploads (`upload:` keys) and items of other folders or manifests are never touched.

Removal goes through `Catalogue.delete_ids` under the write lock: each chunk is one store
transaction (items, captions, vectors, token sets, links and lexical entries together), then the
in-memory indexes; the index files are saved once at the end. A kill at any moment leaves index
files that lag the store, which the next open repairs; the same command then removes the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from indexer.entries import Entry
from indexer.manifest import ManifestSource
from indexer.rows import entry_keys, media_keys
from indexer.sources import FolderSource
from retrieval.catalogue import Catalogue
from retrieval.store import ItemRecord

CHUNK = 500
_LINE = re.compile(r":(\d+)$")


@dataclass
class SyncPlan:
    source: str
    doomed: list[tuple[int, str, str]] = field(default_factory=list)  # (id, key, why)
    kept_unreadable: int = 0  # items of manifest lines that cannot be read now
    removed: dict[str, int] = field(default_factory=dict)  # modality -> count, once applied
    dry_run: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "to_remove" if self.dry_run else "removed_items": [
                {"id": i, "key": k, "why": w} for i, k, w in self.doomed
            ],
            "removed": self.removed,
            "kept_unreadable": self.kept_unreadable,
        }


def plan_sync(cat: Catalogue, source: FolderSource | ManifestSource) -> SyncPlan:
    """What `--sync` would remove; reads only."""
    if isinstance(source, FolderSource):
        return _plan_folder(cat, source)
    return _plan_manifest(cat, source)


def apply_sync(cat: Catalogue, plan: SyncPlan, progress: bool = True) -> SyncPlan:
    """Delete the planned items (the caller holds the write lock); index files saved at the end."""
    plan.dry_run = False
    with tqdm(total=len(plan.doomed), desc="sync", unit="item", disable=not progress) as bar:
        for start in range(0, len(plan.doomed), CHUNK):
            chunk = [i for i, _, _ in plan.doomed[start : start + CHUNK]]
            for modality in cat.delete_ids(chunk, save=False).values():
                plan.removed[modality] = plan.removed.get(modality, 0) + 1
            bar.update(len(chunk))
    cat.flush()
    return plan


def _plan_folder(cat: Catalogue, source: FolderSource) -> SyncPlan:
    plan = SyncPlan(source=source.name)
    under = cat.store.keys_with_prefix(str(source.root) + os.sep)
    gone = {i: k for k, i in under.items() if not os.path.lexists(k)}
    for rec in _records(cat, sorted(gone)):
        if _from_folder_walk(rec):
            plan.doomed.append((rec.id, rec.key, "file is gone"))
    return plan


def _from_folder_walk(rec: ItemRecord) -> bool:
    """Written by a folder walk (not a manifest entry that happens to use a path as its id)."""
    if rec.source == rec.key:
        return True
    file = rec.attrs.get("file")
    return isinstance(file, str) and rec.source == file and rec.key.endswith(os.sep + file)


def _plan_manifest(cat: Catalogue, source: ManifestSource) -> SyncPlan:
    plan = SyncPlan(source=source.name)
    mine = cat.store.keys_with_source_prefix(f"{source.path}:")
    if not mine:
        return plan
    current: set[str] = set()
    gone: set[str] = set()  # keys of entries still listed whose media file is gone
    unreadable_lines: set[str] = set()
    unreadable_keys: set[str] = set()
    for e in source:
        if e.error is None:
            dead = _dead_keys(e)
            gone |= dead
            current.update(k for k in entry_keys(e) if k not in dead)
        else:  # keep what this line wrote before, found by its id or by its line number
            unreadable_lines.add(e.where.rsplit(":", 1)[-1])
            unreadable_keys.add(e.key)
    stale = {i: k for k, i in mine.items() if k not in current}
    for rec in _records(cat, sorted(stale)):
        line = _LINE.search(rec.source or "")
        owner = rec.key.split("#", 1)[0]
        if owner in unreadable_keys or (line and line.group(1) in unreadable_lines):
            plan.kept_unreadable += 1
            continue
        why = "file is gone" if rec.key in gone else f"no entry in {Path(source.name).name}"
        plan.doomed.append((rec.id, rec.key, why))
    return plan


def _dead_keys(e: Entry) -> set[str]:
    """An entry's keys whose media file no longer exists; its captions too when none is left."""
    keys = media_keys(e)
    dead = {k for k, ref in zip(keys, e.media, strict=True) if not os.path.lexists(ref.path)}
    if e.media and len(dead) == len(set(keys)):
        dead |= set(entry_keys(e)) - set(keys)
    return dead


def _records(cat: Catalogue, ids: list[int]) -> Iterator[ItemRecord]:
    for start in range(0, len(ids), CHUNK):
        recs = cat.store.get_items(ids[start : start + CHUNK])
        yield from (recs[i] for i in ids[start : start + CHUNK] if i in recs)
