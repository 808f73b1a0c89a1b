"""Where the training jobs read data and keep caches: never relative to the current directory.

- cache root: `$CROSSMEDIA_CACHE_DIR`, else the user cache directory (platformdirs:
  ~/.cache/crossmedia on Linux). Tower features, head checkpoints and audio features live below it.
- training data root: `$CROSSMEDIA_TRAIN_DATA`, else `shared/data` beside the repository checkout
  (`<checkout>/../shared/data`), resolved from this file, not from the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from retrieval.errors import CrossmediaError

CACHE_ENV = "CROSSMEDIA_CACHE_DIR"
DATA_ENV = "CROSSMEDIA_TRAIN_DATA"


class TrainingDataMissing(CrossmediaError, FileNotFoundError):
    """A training data folder or manifest is not where the job looked."""


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("crossmedia"))


def cache_dir(name: str, root: Path | None = None) -> Path:
    """One job's folder under the cache root (or under `root`, when the user gave one)."""
    return Path(root if root is not None else cache_root()) / name


def default_data_root() -> Path:
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def data_root(root: Path | None = None) -> Path:
    """The training data sets' folder (each set is `<root>/<name>/items.jsonl`), checked."""
    path = Path(root) if root is not None else default_data_root()
    if not path.is_dir():
        raise TrainingDataMissing(
            f"Training data folder {path} not found. Pass --data-root DIR or set ${DATA_ENV} "
            "to the folder holding the data sets (coco_mini/, tuxpaint/, ... each with items.jsonl)."
        )
    return path
