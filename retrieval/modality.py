"""The modalities an item (and a query) can have."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Modality(StrEnum):
    IMAGE = "image"
    TEXT = "text"
    AUDIO = "audio"


ALL_MODALITIES: tuple[Modality, ...] = (Modality.IMAGE, Modality.TEXT, Modality.AUDIO)


def by_modality(pairs: Iterable[tuple[int, str]]) -> dict[str, list[int]]:
    """(id, modality) pairs -> ids per modality."""
    out: dict[str, list[int]] = {}
    for item_id, modality in pairs:
        out.setdefault(modality, []).append(item_id)
    return out
