"""A small real sample catalogue that exists on any machine with this package installed: the
photos bundled inside the scikit-image wheel, with one-line captions.

    python -m indexer.sample_catalogue [OUT_DIR]   # writes OUT_DIR/items.jsonl, prints its path
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CAPTIONS = {
    "astronaut.png": "An astronaut in a white spacesuit posing in front of a flag.",
    "chelsea.png": "A tabby cat looking to the side.",
    "coffee.png": "A cup of coffee on a saucer with a spoon.",
    "rocket.jpg": "A rocket standing on its launch pad.",
    "motorcycle_left.png": "A motorcycle parked in front of a wall.",
    "camera.png": "A man standing behind a camera on a tripod.",
    "coins.png": "Old coins laid out on a dark background.",
    "moon.png": "The cratered surface of the moon.",
    "horse.png": "The black silhouette of a horse.",
    "brick.png": "A brick wall.",
    "grass.png": "A close-up of green grass.",
    "gravel.png": "A close-up of gravel stones.",
    "hubble_deep_field.jpg": "Galaxies in a deep field image of space.",
    "retina.jpg": "A photograph of the retina of a human eye.",
    "page.png": "A scanned page of printed text.",
}


def write_sample(out_dir: Path) -> Path:
    try:
        import skimage
    except ImportError as exc:
        raise ImportError(
            "The bundled sample needs scikit-image: pip install scikit-image"
        ) from exc
    data = Path(skimage.__file__).parent / "data"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "items.jsonl"
    rows = []
    for name, caption in CAPTIONS.items():
        path = data / name
        if path.is_file():
            rows.append({"id": f"sample-{path.stem}", "image": str(path), "captions": [caption]})
    if not rows:
        raise FileNotFoundError(f"No bundled photos found under {data}.")
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


if __name__ == "__main__":
    print(write_sample(Path(sys.argv[1] if len(sys.argv) > 1 else "crossmedia-sample")))
