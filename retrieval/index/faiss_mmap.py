"""Memory-mapped IVF indexes: opening a 1 GB index file maps it (milliseconds) instead of reading
it (a second at 1M vectors), so a fresh `crossmedia search` process does not pay for the lists
it never probes.

FAISS maps an IVF file's inverted lists read-only (`IO_FLAG_MMAP` gives `OnDiskInvertedLists`);
writing to them aborts the process, so the first write copies them into memory (`own_lists`).
A mapped file must never change in place: index files are only ever replaced
(`fsutil.atomic_write_via`), and a replaced file stays mapped at its old inode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_index(path: Path | str, mmap: bool) -> tuple[Any, bool]:
    """(the FAISS index in `path`, whether its inverted lists are mapped). Only IVF indexes map;
    any other type is read into memory whatever `mmap` says."""
    import faiss

    if mmap:
        try:
            raw = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
            return raw, mapped(raw)
        except RuntimeError:  # a file system without mmap: read it (a corrupt file fails again)
            pass
    return faiss.read_index(str(path)), False


def mapped(raw: Any) -> bool:
    import faiss

    ivf: Any = faiss.try_extract_index_ivf(raw)
    lists = None if ivf is None else faiss.downcast_InvertedLists(ivf.invlists)
    return isinstance(lists, faiss.OnDiskInvertedLists)


def own_lists(raw: Any) -> None:
    """Copy a mapped IVF index's inverted lists into memory, in list order (same results)."""
    import faiss

    fx: Any = faiss  # the bundled stubs lack copy_subset_to and its subset types
    ivf: Any = fx.extract_index_ivf(raw)
    lists = fx.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.invlists.copy_subset_to(lists, fx.InvertedLists.SUBSET_TYPE_INVLIST, 0, ivf.nlist)
    ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index owns it now
