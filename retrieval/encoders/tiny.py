"""A tiny, randomly initialised open_clip model for tests: seeded, fast, no weights needed.

Its vectors carry no meaning across modalities, but the same input always gives the same vector,
which is what the plumbing tests need. Never use it for real search.
"""

from __future__ import annotations

from typing import Any

from retrieval.encoders.base import EmbeddingSpace
from retrieval.encoders.openclip import OpenClipEncoder
from retrieval.encoders.registry import default_device, register_encoder

TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@register_encoder("tiny-test")
def create_tiny(name: str, device: str | None = None) -> OpenClipEncoder:
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CONFIG)
    preprocess = open_clip.image_transform(32, is_train=False)
    tokenizer = open_clip.SimpleTokenizer(context_length=TINY_CONFIG["text_cfg"]["context_length"])
    space = EmbeddingSpace(model=name, head_version="seed0", dim=TINY_CONFIG["embed_dim"])
    return OpenClipEncoder(model, preprocess, tokenizer, space, device=default_device(device))
