"""Pixel fingerprints that tell a copy of a photo from another photo of the same scene.

The shared space is semantic: two different photos of a football match sit as close in it as a
photo and its re-encoded copy (benchmarks/dedup_bench.py measured cosines up to 0.93 between
different photos, and down to 0.6 between a photo and its half-size JPEG copy). So the vectors
only propose candidates; a candidate pair of images is confirmed on pixels:

- each image becomes a 64 x 64 grey thumbnail; its "views" are 19 crops of that thumbnail
  (the whole, and 90% and 80% windows at the corners, edge centres and centre, 1 + 9 + 9),
  each resized to 32 x 32 and normalised to zero mean and unit length;
- the similarity of A and B is the best normalised cross-correlation between a view of one and
  the whole of the other, so resizing, re-encoding and crops of up to a fifth of a side
  still match (0.99+ on the benchmark), while other photos of the same scene do not (<= 0.89).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image

THUMB = 64
SIDE = 32
SCALES = (1.0, 0.9, 0.8)
N_VIEWS = 19


def views_of_image(image: Image) -> np.ndarray:
    """(N_VIEWS, SIDE * SIDE) float32: the whole image first, then the crops."""
    from PIL import Image as PILImage

    grey = image.convert("L").resize((THUMB, THUMB), PILImage.Resampling.BILINEAR)
    thumb = np.asarray(grey, np.float32)
    out = []
    for scale in SCALES:
        w = int(round(THUMB * scale))
        offsets = sorted({0, (THUMB - w) // 2, THUMB - w})
        for y in offsets:
            for x in offsets:
                crop = PILImage.fromarray(thumb[y : y + w, x : x + w])
                v = np.asarray(crop.resize((SIDE, SIDE), PILImage.Resampling.BILINEAR)).ravel()
                v = v - v.mean()
                n = float(np.linalg.norm(v))
                out.append(v / n if n > 0 else v)
    return np.stack(out).astype(np.float32)


def views_of_file(path: str | Path) -> np.ndarray | None:
    """The views of an image file; None when it cannot be read (moved, deleted, not an image):
    the caller then decides on the vectors alone."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            im.draft("RGB", (THUMB * 2, THUMB * 2))  # JPEG: decode at a fraction of full size
            return views_of_image(im)
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None


def pixel_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation of a view of one image with the whole of the other, in [-1, 1]."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    return float(max((a32 @ b32[0]).max(), (b32 @ a32[0]).max()))


class ViewCache:
    """Views by item id, least recently used dropped beyond `size` (float16: 19 KB an item)."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._views: OrderedDict[int, np.ndarray | None] = OrderedDict()

    def get(self, item_id: int, path: str | None) -> np.ndarray | None:
        """The item's views (read from `path` on a miss); None when the file cannot be read."""
        if item_id in self._views:
            self._views.move_to_end(item_id)
            return self._views[item_id]
        return self.put(item_id, views_of_file(path) if path else None)

    def put(self, item_id: int, views: np.ndarray | None) -> np.ndarray | None:
        self._views[item_id] = None if views is None else views.astype(np.float16)
        if len(self._views) > self.size:
            self._views.popitem(last=False)
        return self._views[item_id]
