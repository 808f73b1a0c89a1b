"""Image-text pairs from `items.jsonl` manifests, split deterministically by item id (both
image-text trainers and the starter benchmark read them).

Texts are an item's `captions` (every one), or class prompts built from its `label`
("a photo of a {label}"). Identical strings become one text row, so two images sharing a caption
(Tux Paint's "A frog.", CIFAR's class prompts) are both positives of that one text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from retrieval.splits import split_of

LABEL_PROMPT = "a photo of a {}"


@dataclass(frozen=True)
class PairItem:
    item_id: str
    source: str  # data set name (manifest folder), e.g. "coco_mini"
    image: Path
    texts: tuple[str, ...]

    @property
    def split(self) -> str:
        return split_of(self.item_id)


def manifest_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def item_texts(
    captions: list[str], label: object, label_prompt: str = LABEL_PROMPT
) -> tuple[str, ...]:
    if captions:
        return tuple(captions)
    if label:
        return (label_prompt.format(label),)
    return ()


def read_image_pairs(manifest: Path, label_prompt: str = LABEL_PROMPT) -> list[PairItem]:
    """Every item of `manifest` with an image and at least one text (others are skipped).

    Parsed by the ingestion's ManifestSource, so training and indexing read manifests alike; a
    bad line stops training (a silently smaller training set would be worse)."""
    from indexer.sources import ManifestSource
    from indexer.training.paths import TrainingDataMissing
    from retrieval.modality import Modality

    manifest = Path(manifest)
    if not manifest.is_file():
        raise TrainingDataMissing(
            f"Manifest {manifest} not found. Pass an items.jsonl, e.g. ../shared/data/coco_mini/items.jsonl"
        )
    items = []
    for entry in ManifestSource(manifest):
        if entry.error:
            raise ValueError(f"{manifest} ({entry.where}): {entry.error}")
        images = [ref.path for ref in entry.media if ref.modality == Modality.IMAGE]
        texts = item_texts(entry.captions, entry.attrs.get("label"), label_prompt)
        if images and texts:
            items.append(PairItem(entry.key, manifest.parent.name, images[0], texts))
    return items


@dataclass
class PairTable:
    """Rows of media, rows of unique texts, and the positive pairs between them."""

    items: list[PairItem]
    texts: list[str]  # unique strings, first-seen order
    pairs: list[tuple[int, int]]  # (item row, text row)

    @classmethod
    def build(cls, items: list[PairItem]) -> PairTable:
        index: dict[str, int] = {}
        pairs = []
        for i, item in enumerate(items):
            for text in dict.fromkeys(item.texts):  # a caption repeated within one item counts once
                pairs.append((i, index.setdefault(text, len(index))))
        return cls(items=items, texts=list(index), pairs=pairs)
