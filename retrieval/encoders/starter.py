"""The offline starter model (work in progress)."""

from __future__ import annotations

from retrieval.encoders.base import Encoder
from retrieval.encoders.registry import register_encoder
from retrieval.errors import ModelUnavailableError


@register_encoder("starter")
def create_starter(name: str, device: str | None = None) -> Encoder:
    raise ModelUnavailableError("The starter model's heads are not trained yet.")
