"""open_clip backend: any open_clip model wrapped in the Encoder interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.encoders.base import EmbeddingSpace, Encoder, l2_normalize
from retrieval.encoders.registry import default_device, register_encoder
from retrieval.errors import ModelUnavailableError, UnknownModelError
from retrieval.modality import Modality

if TYPE_CHECKING:
    import torch
    from PIL import Image


class OpenClipEncoder(Encoder):
    """Image and text towers of one open_clip model (`CLIP` or `CustomTextCLIP`)."""

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Any,
        tokenizer: Any,
        space: EmbeddingSpace,
        device: str = "cpu",
    ) -> None:
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.space = space
        self.device = device
        self.modalities = frozenset({Modality.IMAGE, Modality.TEXT})

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu().numpy())  # type: ignore[operator]
        return _finish(out, self.dim)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                batch = torch.stack([self.preprocess(im) for im in images[i : i + batch_size]])
                out.append(self.model.encode_image(batch.to(self.device)).float().cpu().numpy())  # type: ignore[operator]
        return _finish(out, self.dim)


def _finish(chunks: list[np.ndarray], dim: int) -> np.ndarray:
    if not chunks:
        return np.zeros((0, dim), dtype=np.float32)
    return l2_normalize(np.concatenate(chunks, axis=0))


def parse_openclip_name(name: str) -> tuple[str, str]:
    """`openclip:<model>/<tag-or-checkpoint>` -> (model, tag-or-checkpoint)."""
    body = name.split(":", 1)[1]
    model, sep, pretrained = body.partition("/")
    if not sep or not model or not pretrained:
        raise UnknownModelError(
            f"Bad open_clip model name {name!r}. Use openclip:<model>/<pretrained-tag>, e.g. "
            "openclip:ViT-B-32/laion2b_s34b_b79k, or openclip:<model>/<path to checkpoint>."
        )
    return model, pretrained


@register_encoder("openclip", prefix=True)
def create_openclip(name: str, device: str | None = None) -> OpenClipEncoder:
    import open_clip

    model_name, pretrained = parse_openclip_name(name)
    if model_name not in open_clip.list_models():
        raise UnknownModelError(
            f"Unknown open_clip architecture {model_name!r}. Available: {open_clip.list_models()}"
        )
    is_file = Path(pretrained).expanduser().is_file()
    if not is_file and pretrained not in open_clip.list_pretrained_tags_by_model(model_name):
        raise UnknownModelError(
            f"Unknown pretrained tag {pretrained!r} for {model_name}. Available: "
            f"{open_clip.list_pretrained_tags_by_model(model_name)}, or a local checkpoint path."
        )
    device = default_device(device)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=str(Path(pretrained).expanduser()) if is_file else pretrained,
            device=device,
        )
    except Exception as exc:  # network, hub and file errors all mean "no weights here"
        raise ModelUnavailableError(
            f"Could not load weights for {name!r}: {type(exc).__name__}: {exc}. The pretrained "
            "weights come from the Hugging Face hub, which this machine may not reach. Fix: run "
            "once where the hub is reachable (they are cached in ~/.cache/huggingface), or pass a "
            "local checkpoint: --model openclip:<model>/<path/to/weights.bin>, or use the offline "
            "default --model starter."
        ) from exc
    tokenizer = open_clip.get_tokenizer(model_name)
    dim = (
        int(model.text_projection.shape[1])
        if getattr(model, "text_projection", None) is not None
        else int(model.encode_text(tokenizer(["x"]).to(device)).shape[-1])
    )
    tag = f"sha256:{_file_digest(Path(pretrained))}" if is_file else pretrained
    space = EmbeddingSpace(model=f"openclip:{model_name}/{tag}", head_version="", dim=dim)
    return OpenClipEncoder(model, preprocess, tokenizer, space, device=device)


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.expanduser().open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
