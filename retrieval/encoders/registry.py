"""Encoder registry: names (and name prefixes) map to factory functions; nothing loads until called.

The built-in encoders register themselves on import; `factory.create_encoder` imports them.
"""

from __future__ import annotations

from collections.abc import Callable

from retrieval.encoders.base import Encoder

EncoderFactory = Callable[..., Encoder]

_EXACT: dict[str, EncoderFactory] = {}
_PREFIX: dict[str, EncoderFactory] = {}

DEFAULT_MODEL = "starter-v2"  # heads v2 (issue 16); `starter` (v1) stays for its catalogues


def register_encoder(
    name: str, *, prefix: bool = False
) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register `fn(name, device=None) -> Encoder` under an exact name or a `prefix:` scheme."""

    def deco(fn: EncoderFactory) -> EncoderFactory:
        table = _PREFIX if prefix else _EXACT
        if name in table:
            raise ValueError(f"Encoder {name!r} is registered twice.")
        table[name] = fn
        return fn

    return deco


def lookup(name: str) -> EncoderFactory | None:
    """The factory registered for `name` (exact, or its `prefix:` scheme); None when unknown."""
    if name in _EXACT:
        return _EXACT[name]
    scheme, sep, _ = name.partition(":")
    return _PREFIX.get(scheme) if sep else None


def registered_names() -> list[str]:
    return sorted(_EXACT) + sorted(
        f"{p}:<model>/<pretrained-tag or checkpoint path>" for p in _PREFIX
    )


def default_device(device: str | None = None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
