"""Deterministic train/validation/test split by item id, shared by every trainer and benchmark.

The split depends only on the id string, so it is the same on every machine and every run, and an
item never moves between splits when a data set grows.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Split = Literal["train", "val", "test"]

TRAIN_PERCENT = 70
VAL_PERCENT = 10  # the remaining 20% is test


def split_of(item_id: str) -> Split:
    bucket = int.from_bytes(hashlib.sha1(item_id.encode("utf-8")).digest()[:4], "big") % 100
    if bucket < TRAIN_PERCENT:
        return "train"
    if bucket < TRAIN_PERCENT + VAL_PERCENT:
        return "val"
    return "test"
