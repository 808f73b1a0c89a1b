"""The locked trunk's ImageNet knowledge as a training signal and as a validation proxy.

Captions teach scenes and actions but rarely name one of 1,000 object classes; heads trained on
captions alone forget what the label bridge knew ("a photo of a {class}" retrieval falls). Two
uses of the trunk's own classifier (no labels needed, any image):

- teacher: softmax of the classifier on the pooled trunk features, (N, 1000), distilled into the
  heads (`HeadConfig.distill`): image embedding x projected class prompts should rank classes as
  the classifier does;
- proxy: the class-name protocol on a split's images, with the classifier's confident top-1 as
  the label (one image per class, the most confident), text -> image and image -> 1,000 class
  prompts, R@1 / R@10.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from retrieval.metrics import retrieval_report

if TYPE_CHECKING:
    from indexer.align.heads import ContrastiveHeads
    from indexer.training.features import FeatureCache

# Prompt ensemble for distillation; the bridge's own prompt comes first.
DISTILL_TEMPLATES = (
    "a picture of a {}",
    "a photo of a {}",
    "a photo of the {}",
    "an image of a {}",
    "{}",
)
PROXY_TEMPLATE = "a photo of a {}"
PROXY_ROW = DISTILL_TEMPLATES.index(PROXY_TEMPLATE)  # its row in AlignData.class_text


def teacher_probs(
    classifier_weight: np.ndarray,
    classifier_bias: np.ndarray,
    pooled: np.ndarray,
    temperature: float = 1.0,
) -> np.ndarray:
    """pooled (N, 1280) -> (N, C) float32 softmax of the trunk's ImageNet classifier."""
    logits = (pooled @ classifier_weight.T + classifier_bias) / temperature  # (N, C)
    logits = logits - logits.max(1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def tempered(teacher: np.ndarray, temperature: float) -> torch.Tensor:
    """The stored T=1 teacher (N, C) as softmax(logits / T), without the logits."""
    p = torch.from_numpy(np.ascontiguousarray(teacher, dtype=np.float32))
    if temperature != 1.0:
        p = p.clamp_min(1e-12) ** (1.0 / temperature)
        p = p / p.sum(1, keepdim=True)
    return p


def distill_loss(
    model: ContrastiveHeads,
    m_emb: torch.Tensor,
    p: torch.Tensor,
    class_text: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """KL(teacher p (B, C) || softmax over m_emb (B, dim) x one random template's projected class
    prompts); class_text (K, C, D_t). Draws one integer from `gen`."""
    k = int(torch.randint(0, len(class_text), (1,), generator=gen))
    logits = model.logit_scale.exp().clamp(max=100) * m_emb @ model.encode_text(class_text[k]).T
    return (p * (p.clamp_min(1e-8).log() - logits.log_softmax(1))).sum(1).mean()  # (B, C) -> ()


def class_name_proxy(
    m: np.ndarray,
    class_emb: np.ndarray,
    probs: np.ndarray,
    rows: Sequence[int],
    min_prob: float = 0.5,
) -> dict[str, float]:
    """Class-name retrieval on `rows` with pseudo-labels: m (N, d) image and class_emb (C, d)
    prompt embeddings, L2-normalised; probs (N, C) the teacher. Names shared by two ImageNet
    indices (e.g. "crane") are one class here only if the caller dedupes; duplicates just add
    distractors. {} when fewer than 2 classes are confident."""
    rows = np.asarray(rows)
    top = probs[rows].argmax(1)
    conf = probs[rows].max(1)
    best: dict[int, tuple[float, int]] = {}
    for r, c, p in zip(rows.tolist(), top.tolist(), conf.tolist(), strict=True):
        if p >= min_prob and p > best.get(c, (-1.0, -1))[0]:
            best[c] = (p, r)
    classes = sorted(best)
    images = [best[c][1] for c in classes]
    if len(classes) < 2:
        return {}
    t2i = retrieval_report(class_emb[classes] @ m[images].T, images, [{r} for r in images])
    i2t = retrieval_report(
        m[images] @ class_emb.T, list(range(len(class_emb))), [{c} for c in classes]
    )
    return {
        "t2i R@1": t2i["R@1"],
        "t2i R@10": t2i["R@10"],
        "i2t R@1": i2t["R@1"],
        "i2t R@10": i2t["R@10"],
        "classes": float(len(classes)),
    }


def with_class_proxy(
    out: dict[str, dict], m: np.ndarray, c: np.ndarray, probs: np.ndarray, rows: Sequence[int]
) -> dict[str, dict]:
    """Add `class_proxy` to an evaluation; its R@1 then counts half of the selection score (caption
    recall alone would trade class names away silently)."""
    proxy = class_name_proxy(m, c, probs, rows)
    out["class_proxy"] = proxy
    if proxy:  # else fewer than 2 confident classes in this split: caption recall alone
        out["mean"]["score"] = (
            out["mean"]["score"] + (proxy["t2i R@1"] + proxy["i2t R@1"]) / 2
        ) / 2
    return out


def class_templates(features: FeatureCache) -> np.ndarray:
    """Pooled locked-text features of every DISTILL_TEMPLATES prompt of the 1,000 ImageNet
    classes: (K, C, D_t) float32, cached beside the manifests' features."""
    from indexer.training.features import POOLED_BATCH, cached_npz
    from retrieval.encoders.starter_model import imagenet_class_names

    names = imagenet_class_names()

    def make() -> dict[str, np.ndarray]:
        rows = [
            features.text_features([t.format(c) for c in names], POOLED_BATCH, False)[2]
            for t in DISTILL_TEMPLATES
        ]
        return {"x": np.stack(rows)}

    return cached_npz(features.cache_dir / f"{features.tag}-class_templates.npz", make)["x"]


def attach_class_knowledge(data: Any, features: FeatureCache) -> None:
    """Set `data.teacher` (N, C) and `data.class_text` (K, C, D_t) of an AlignData whose media
    rows start with the pooled trunk features (the starter's head inputs)."""
    clf = features.towers.visual.bridge.classifier
    pooled = data.media[:, : clf.in_features]
    data.teacher = teacher_probs(
        clf.weight.detach().cpu().numpy(), clf.bias.detach().cpu().numpy(), pooled
    )
    data.class_text = class_templates(features)
