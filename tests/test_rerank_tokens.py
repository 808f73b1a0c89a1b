"""Token sets of the real starter towers (slow: loads EfficientNet-Lite0 and MiniLM from wheels).

The heads' values do not matter for these properties, so the towers come from `open_towers`
(untrained heads) and the tests run whether or not the trained heads artifact is present.
"""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.encoders.starter_tokens import MAX_TOKENS
from retrieval.modality import Modality
from tests.conftest import coco_entries

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def towers_encoder():  # noqa: ANN201 - StarterEncoder
    import torch

    from retrieval.encoders.base import EmbeddingSpace
    from retrieval.encoders.starter import StarterEncoder, open_towers

    towers = open_towers()
    torch.manual_seed(0)
    with torch.no_grad():  # give the (untrained) heads and bridge non-trivial values
        towers.visual.bridge.class_text.normal_()
        towers.visual.bridge_proj.weight.normal_(0, 0.05)
    return StarterEncoder(
        towers.model, towers.preprocess, towers.tokenizer, EmbeddingSpace("starter", "test", 256)
    )


def test_image_tokens_from_the_same_pass(towers_encoder) -> None:  # noqa: ANN001
    from PIL import Image

    images = []
    for e in coco_entries(3):
        with Image.open(e["image"]) as im:
            images.append(im.convert("RGB"))
    vecs, sets = towers_encoder.encode_with_tokens(Modality.IMAGE, images, batch_size=2)
    np.testing.assert_allclose(vecs, towers_encoder.encode_images(images), atol=1e-5)
    assert sets is not None and len(sets) == 3
    for v, s in zip(vecs, sets, strict=True):
        assert s.dtype == np.float16 and s.shape == (14, 256) and s.nbytes <= 8192
        np.testing.assert_allclose(s[0].astype(np.float32), v, atol=2e-3)
        np.testing.assert_allclose(np.linalg.norm(s.astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_text_tokens_from_the_same_pass(towers_encoder) -> None:  # noqa: ANN001
    texts = [
        "a dog",
        "A man and his dog cross country skiing in the snow next to a yellow lab.",
        " ".join(["word"] * 60),
    ]
    vecs, sets = towers_encoder.encode_with_tokens(Modality.TEXT, texts)
    np.testing.assert_allclose(vecs, towers_encoder.encode_texts(texts), atol=1e-5)
    assert sets is not None
    assert sets[0].shape == (1 + 4, 256)  # [CLS] a dog [SEP]
    assert sets[2].shape == (MAX_TOKENS, 256)  # 62 word pieces pooled to 15 + the vector
    for v, s in zip(vecs, sets, strict=True):
        assert s.dtype == np.float16 and s.nbytes <= 8192
        np.testing.assert_allclose(s[0].astype(np.float32), v, atol=2e-3)


def test_shipped_reranker_belongs_to_the_shipped_heads() -> None:
    from retrieval.encoders import create_encoder
    from retrieval.errors import ModelUnavailableError, SpaceMismatchError
    from retrieval.rerank import STARTER_RERANKER, WEIGHTS_DIR, create_reranker, reranker_for_space

    try:
        encoder = create_encoder("starter", device="cpu")
    except ModelUnavailableError as exc:
        pytest.skip(f"starter heads not available: {exc}")
    if not (WEIGHTS_DIR / f"{STARTER_RERANKER}.safetensors").is_file():
        pytest.fail("the starter re-ranker artifact is not shipped")
    rr = reranker_for_space(encoder)
    assert rr is not None and rr.space_key == encoder.space.key()
    with pytest.raises(SpaceMismatchError, match="--no-rerank"):
        create_reranker(STARTER_RERANKER, space_key="starter|other|256")
