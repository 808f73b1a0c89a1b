"""Encoder registry: names (and name prefixes) map to factory functions; nothing loads until called."""

from __future__ import annotations

from collections.abc import Callable

from retrieval.encoders.base import Encoder
from retrieval.errors import UnknownModelError

EncoderFactory = Callable[..., Encoder]

_EXACT: dict[str, EncoderFactory] = {}
_PREFIX: dict[str, EncoderFactory] = {}

DEFAULT_MODEL = "starter"


def register_encoder(name: str, *, prefix: bool = False) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register `fn(name, device=None) -> Encoder` under an exact name or a `prefix:` scheme."""

    def deco(fn: EncoderFactory) -> EncoderFactory:
        table = _PREFIX if prefix else _EXACT
        if name in table:
            raise ValueError(f"Encoder {name!r} is registered twice.")
        table[name] = fn
        return fn

    return deco


def _ensure_builtin() -> None:
    # Importing the modules runs their @register_encoder decorators (cheap: no weights load).
    from retrieval.encoders import openclip, starter, tiny  # noqa: F401


def list_models() -> list[str]:
    _ensure_builtin()
    return sorted(_EXACT) + sorted(f"{p}:<model>/<pretrained-tag or checkpoint path>" for p in _PREFIX)


def create_encoder(name: str = DEFAULT_MODEL, device: str | None = None) -> Encoder:
    """Build the encoder called `name`; weights are resolved here and nowhere earlier."""
    _ensure_builtin()
    if name in _EXACT:
        return _EXACT[name](name, device=device)
    scheme, sep, _ = name.partition(":")
    if sep and scheme in _PREFIX:
        return _PREFIX[scheme](name, device=device)
    raise UnknownModelError(f"Unknown model {name!r}. Available: {list_models()}")


def default_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
