"""The embedding space a named model embeds into, read without loading the model: for the
models described by a config in `model_configs/` (the starter family), from that config and the
metadata in its heads artifact's header. Vectors imported from elsewhere are declared to be in
such a space (`crossmedia import-vectors --model`)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from retrieval.encoders.base import EmbeddingSpace
from retrieval.encoders.starter_config import CONFIG_DIR, StarterConfig

WEIGHTS_DIR = Path(__file__).parent / "weights"


def space_of(name: str) -> EmbeddingSpace | None:
    """The space of model `name` when a config describes it; None when only loading the model
    can tell (then use `create_encoder(name).space`)."""
    if not (CONFIG_DIR / f"{name}.json").is_file():
        return None
    cfg = StarterConfig.load(name)
    version = _head_version(WEIGHTS_DIR / f"{cfg.heads}.safetensors") or cfg.heads
    return EmbeddingSpace(cfg.name, version, cfg.embed_dim, audio_head=cfg.audio_head)


def _head_version(path: Path) -> str | None:
    """`head_version` from a safetensors file's header metadata (the file's first bytes)."""
    try:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    return (header.get("__metadata__") or {}).get("head_version")
