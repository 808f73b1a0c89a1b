"""Encoders: towers that map text, images and audio into one shared space."""

from retrieval.encoders.base import EmbeddingSpace, Encoder, UnsupportedModalityError
from retrieval.encoders.factory import create_encoder, list_models
from retrieval.encoders.registry import DEFAULT_MODEL, register_encoder

__all__ = [
    "DEFAULT_MODEL",
    "EmbeddingSpace",
    "Encoder",
    "UnsupportedModalityError",
    "create_encoder",
    "list_models",
    "register_encoder",
]
