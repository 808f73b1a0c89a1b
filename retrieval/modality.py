"""The modalities an item (and a query) can have."""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    IMAGE = "image"
    TEXT = "text"
    AUDIO = "audio"


ALL_MODALITIES: tuple[Modality, ...] = (Modality.IMAGE, Modality.TEXT, Modality.AUDIO)
