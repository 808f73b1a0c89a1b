"""The photo set of benchmarks/dedup_bench.py: real photos of coco_mini and flickr8k with
generated copies (known truth), and pairs of different photos of the same scene (hard negatives).
See that module's docstring for the protocol."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image

from retrieval.splits import split_of

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = ("coco_mini", "flickr8k")


def _copies(img: Image.Image) -> dict[str, bytes]:
    w, h = img.size

    def jpeg(im: Image.Image, q: int) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=q)
        return buf.getvalue()

    half = img.resize((max(w // 2, 16), max(h // 2, 16)), Image.Resampling.BICUBIC)
    return {
        "half": jpeg(half, 90),
        "x1.5": jpeg(img.resize((w * 3 // 2, h * 3 // 2), Image.Resampling.BICUBIC), 90),
        "q30": jpeg(img, 30),
        "crop90": jpeg(img.crop((w // 20, h // 20, w - w // 20, h - h // 20)), 90),
        "crop80": jpeg(img.crop((0, 0, w * 4 // 5, h * 4 // 5)), 90),
        "half_q50": jpeg(half, 50),
    }


def _norm(caption: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", caption.lower()).split())


def load_photos() -> list[dict[str, Any]]:
    rows = []
    for name in SETS:
        for line in (DATA / name / "items.jsonl").read_text().splitlines():
            obj = json.loads(line)
            obj["image"] = str(DATA / name / obj["image"])
            rows.append(obj)
    return rows


def _same_scene_pairs(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(id, id, caption) of different photos sharing a normalised caption, each photo once."""
    by_caption: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        for c in {_norm(c) for c in r["captions"]}:
            if len(c.split()) >= 4:  # "a dog" is shared by everything; a sentence is not
                by_caption[c].append(r["id"])
    out, used = [], set()
    for caption, ids in sorted(by_caption.items()):
        ids = [i for i in dict.fromkeys(ids) if i not in used]
        if len(ids) >= 2:
            out.append((ids[0], ids[1], caption))
            used.update(ids[:2])
    return out


def build_split(
    rows: list[dict[str, Any]], split: str, per_split: int, folder: Path
) -> tuple[Path, list[tuple[str, str, str]]]:
    """The split's images and manifest in `folder`; the hard-negative pairs used."""
    folder.mkdir(parents=True, exist_ok=True)
    by_id = {r["id"]: r for r in rows}
    splits = {split, "train"} if split == "val" else {split}
    negatives = [p for p in _same_scene_pairs(rows) if split_of(p[0]) in splits]
    hard = {i for a, b, _ in negatives for i in (a, b)}
    originals = [r for r in rows if split_of(r["id"]) == split and r["id"] not in hard][:per_split]
    lines = []
    for n, r in enumerate(originals):
        src = Path(r["image"])
        img = Image.open(src).convert("RGB")
        files = {"orig": src.read_bytes(), **_copies(img)}
        if n % 5 == 0:
            files["exact"] = files["orig"]
        for kind, data in files.items():
            name = f"{r['id']}~{kind}.jpg"
            (folder / name).write_bytes(data)
            lines.append({"id": f"{r['id']}~{kind}", "image": name})
    for i in sorted(hard):
        shutil.copy(by_id[i]["image"], folder / f"{i}~orig.jpg")
        lines.append({"id": f"{i}~orig", "image": f"{i}~orig.jpg"})
    manifest = folder / "items.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest, negatives
