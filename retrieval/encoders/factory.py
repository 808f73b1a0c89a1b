"""`create_encoder(name)`: the one place encoder weights load. Importing the built-in encoder
modules runs their `@register_encoder` decorators (cheap: no weights load)."""

from __future__ import annotations

from retrieval.encoders import openclip, starter, tiny  # noqa: F401  (registers the built-ins)
from retrieval.encoders.base import Encoder
from retrieval.encoders.registry import DEFAULT_MODEL, lookup, registered_names
from retrieval.errors import UnknownModelError


def list_models() -> list[str]:
    return registered_names()


def create_encoder(name: str = DEFAULT_MODEL, device: str | None = None) -> Encoder:
    """Build the encoder called `name`; weights are resolved here and nowhere earlier."""
    factory = lookup(name)
    if factory is None:
        raise UnknownModelError(f"Unknown model {name!r}. Available: {list_models()}")
    return factory(name, device=device)


def text_query_encoder(name: str = DEFAULT_MODEL) -> Encoder:
    """The lightest encoder that embeds typed queries for model `name`: the numpy text tower for
    a starter config (no torch import; starter_text_np.py), else the model itself. Anything but
    text builds the full model on first use."""
    from retrieval.encoders.spaces import space_of
    from retrieval.encoders.starter_text_np import StarterTextQueries

    if space_of(name) is None:
        return create_encoder(name)
    return StarterTextQueries(name, full=lambda: create_encoder(name))
