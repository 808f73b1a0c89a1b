"""Starter model vs baselines on the held-out TEST splits of the real data sets.

    nice .venv/bin/python -m benchmarks.recall_starter [--data ../shared/data] [--no-throughput]

Models: random unit vectors (seeded), the zero-shot label bridge (ImageNet top-10 probabilities x
MiniLM("a picture of a {class}") vs MiniLM(query)), and the starter (`create_encoder("starter")`).
Tasks per set: text->image and image->text. A caption query is correct if any image carrying that
exact caption is retrieved; an image query if any of its captions is; CIFAR-10 uses the prompts
"a photo of a {label}" with every image of that label relevant. Writes
benchmarks/results/recall_starter.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from indexer.training.pairs import read_image_pairs
from retrieval.encoders.base import l2_normalize
from retrieval.metrics import retrieval_report

ROOT = Path(__file__).resolve().parents[1]
SETS = ("coco_mini", "tuxpaint", "cifar10")
MODELS = ("random", "label_bridge", "starter")


def load_test(data: Path, name: str):
    from PIL import Image

    items = [it for it in read_image_pairs(data / name / "items.jsonl") if it.split == "test"]
    images = []
    for it in items:
        with Image.open(it.image) as im:
            images.append(im.convert("RGB"))
    texts = list(dict.fromkeys(t for it in items for t in it.texts))
    pos = {t: i for i, t in enumerate(texts)}
    img_rel = [{pos[t] for t in it.texts} for it in items]  # image row -> relevant text rows
    txt_rel = [set() for _ in texts]
    for i, rel in enumerate(img_rel):
        for t in rel:
            txt_rel[t].add(i)
    return items, images, texts, img_rel, txt_rel


def embed_all(encoder, images, texts) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One trunk pass per image gives both the starter and the bridge embeddings."""
    model, out_img, out_br = encoder.model, [], []
    with torch.inference_mode():
        for i in range(0, len(images), 32):
            x = torch.stack([encoder.preprocess(im) for im in images[i : i + 32]])
            pooled = model.visual.tower.trunk(x)  # (B, 1280)
            bridge = model.visual.bridge(pooled)  # (B, 384), MiniLM space
            out_br.append(bridge.numpy())
            out_img.append(
                (
                    model.visual.tower.head(pooled)
                    + model.visual.bridge_gate * model.visual.bridge_proj(bridge)
                ).numpy()
            )
    starter_img = l2_normalize(np.concatenate(out_img))
    # Guard: the shortcut above must equal the public encoder path.
    np.testing.assert_allclose(encoder.encode_images(images[:4]), starter_img[:4], atol=1e-4)
    with torch.inference_mode():  # the bridge's text side: pooled MiniLM, no head
        pooled = [
            encoder.towers.pooled_text(s, m).float().numpy()
            for s, m in encoder.towers.iter_text_states(texts, 64)
        ]
    rng = np.random.default_rng(0)
    return {
        "random": (
            l2_normalize(rng.normal(size=(len(images), encoder.dim))),
            l2_normalize(rng.normal(size=(len(texts), encoder.dim))),
        ),
        "label_bridge": (
            l2_normalize(np.concatenate(out_br)),
            l2_normalize(np.concatenate(pooled)),
        ),
        "starter": (starter_img, encoder.encode_texts(texts)),
    }


def throughput(encoder, images, texts, repeats: int = 3) -> dict[str, float]:
    """Items/s at batch 1 and 32, best of `repeats` runs (the CPU is shared; best = least disturbed)."""

    def best_rate(fn, items: list, bs: int) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(items, batch_size=bs)
            times.append(time.perf_counter() - t)
        return len(items) / min(times)

    out = {}
    for bs in (1, 32):
        n_img = 8 if bs == 1 else 64
        ims = (images * (n_img // len(images) + 1))[:n_img]
        encoder.encode_images(ims[:bs], batch_size=bs)  # warm-up
        out[f"image/s @bs{bs}"] = best_rate(encoder.encode_images, ims, bs)
        n_txt = 32 if bs == 1 else 256
        txts = (texts * (n_txt // len(texts) + 1))[:n_txt]
        encoder.encode_texts(txts[:bs], batch_size=bs)
        out[f"text/s @bs{bs}"] = best_rate(encoder.encode_texts, txts, bs)
    return out


def markdown(results: dict) -> str:
    lines = [
        "| set | task | model | R@1 | R@5 | R@10 | mAP@10 | queries | gallery | chance R@1 | chance R@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, by_model in results["recall"].items():
        name, task = key.split("/")
        for model in MODELS:
            r = by_model[model]
            bold = "**" if model == "starter" else ""
            lines.append(
                f"| {name} | {task} | {bold}{model}{bold} | {r['R@1']:.3f} | {r['R@5']:.3f} | "
                f"{r['R@10']:.3f} | {r['mAP@10']:.3f} | {r['queries']} | {r['gallery']} | "
                f"{r['chance_R@1']:.3f} | {r['chance_R@10']:.3f} |"
            )
    if results.get("throughput"):
        lines += ["", "| throughput (starter, CPU) | value |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in results["throughput"].items()]
    return "\n".join(lines)


def write_results_section(path: Path, table: str, results: dict) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the rest untouched."""
    start, end = "<!-- recall_starter:start -->", "<!-- recall_starter:end -->"
    space = results["space"]
    body = "\n".join(
        [
            start,
            "## Starter model vs baselines",
            "",
            "Held-out TEST splits (`retrieval.splits.split_of`), never seen by the heads. Space: "
            f"`{space['model']}` / `{space['head_version']}` / dim {space['dim']}. Reproduce:",
            "",
            "```",
            "nice .venv/bin/python -m benchmarks.recall_starter",
            "```",
            "",
            "Gallery sizes are tiny: compare with the chance columns, never with published tables. "
            f"Throughput: CPU `{results['machine']['cpu']}`, {results['machine']['cores']} cores shared "
            f"with other jobs (1-min load average {results['machine'].get('loadavg_1m', 0):.1f}), "
            "best of 3 runs, PIL decode excluded, preprocessing included.",
            "",
            table,
            "",
            end,
        ]
    )
    text = path.read_text() if path.is_file() else "# Benchmark results\n"
    if start in text and end in text:
        text = text[: text.index(start)] + body + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "recall_starter.json"
    )
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument(
        "--results-md",
        type=Path,
        default=ROOT / "benchmarks" / "RESULTS.md",
        help="Markdown file whose 'Starter model vs baselines' section is rewritten",
    )
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"Data folder {args.data} not found; pass --data <path to shared/data>.")
    from retrieval.encoders import create_encoder

    encoder = create_encoder("starter", device="cpu")
    results: dict = {
        "space": json.loads(encoder.space.to_json()),
        "recall": {},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
    }
    tput_sample = None
    for name in SETS:
        items, images, texts, img_rel, txt_rel = load_test(args.data, name)
        embs = embed_all(encoder, images, texts)
        for task, (q, rel) in {
            "text_to_image": (1, txt_rel),
            "image_to_text": (0, img_rel),
        }.items():
            results["recall"][f"{name}/{task}"] = {}
            for model, (im, tx) in embs.items():
                qv, gv = (tx, im) if q == 1 else (im, tx)
                gallery = list(range(len(gv)))
                results["recall"][f"{name}/{task}"][model] = retrieval_report(
                    qv @ gv.T, gallery, rel
                )
        if name == "coco_mini":
            tput_sample = (images[:64], texts[:256])
    if not args.no_throughput and tput_sample:
        results["throughput"] = throughput(encoder, *tput_sample)
        results["machine"]["loadavg_1m"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    table = markdown(results)
    print(table)
    if args.results_md is not None:
        write_results_section(args.results_md, table, results)
    return results


if __name__ == "__main__":
    main()
