"""The starter text tower in numpy (retrieval/encoders/starter_text_np.py) against the torch
towers it stands in for, and the CLI's text search that uses it without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retrieval.encoders.starter_text_np import StarterTextQueries

TEXTS = [
    "a dog running on the beach",
    "",
    "Café &amp; crème brûlée — naïve   tabs\tand\nnewlines",
    "word " * 300,  # past the 128-token context: truncated the same way
    "A MAN riding a horse!!!",
    "日本語のテキスト",
    "two dogs play in the snow near a red barn while children watch from the fence",
]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["starter", "starter-v2"])
def test_numpy_text_vectors_equal_the_torch_towers(model: str) -> None:
    from retrieval.encoders import create_encoder

    full = create_encoder(model)
    fast = StarterTextQueries(model, full=lambda: full)
    assert fast.space == full.space and fast.space.audio_head == full.space.audio_head
    assert full.space.audio_head == {"starter": "starter-audio-head-v1"}.get(
        model, "starter-audio-head-v2"
    )
    for batch in (1, 3, 64):  # padding inside a batch changes nothing
        got = fast.encode_texts(TEXTS, batch_size=batch)
        np.testing.assert_allclose(got, full.encode_texts(TEXTS, batch_size=5), atol=1e-5)
    assert fast.encode_texts([]).shape == (0, full.dim)
    one = np.stack([full.encode_text(t) for t in TEXTS])  # single queries take the numpy path
    np.testing.assert_allclose(one, full.encode_texts(TEXTS, batch_size=5), atol=1e-5)


@pytest.mark.slow
def test_cli_text_search_needs_no_torch(tmp_path: Path) -> None:
    """`crossmedia search --text` on a starter-v2 catalogue (no re-ranker ships for it) embeds
    the query in numpy: torch and open_clip are never imported, and the hits equal the full
    encoder's."""
    from conftest import unit_rows

    from retrieval.encoders import create_encoder

    vecs, data = unit_rows(23, 256, seed=3), tmp_path / "cat"
    np.save(tmp_path / "v.npy", vecs)
    (tmp_path / "m.jsonl").write_text(
        "".join(json.dumps({"id": f"v{i}"}) + "\n" for i in range(23))
    )
    cli = [sys.executable, "-m", "api.cli"]
    subprocess.run([*cli, "import-vectors", str(tmp_path / "v.npy"), "--manifest",
                    str(tmp_path / "m.jsonl"), "--data-dir", str(data), "--model", "starter-v2"],
                   check=True, capture_output=True)  # fmt: skip
    probe = (
        "import sys, runpy; sys.argv = ['crossmedia', 'search', '--text', 'a red bus', '--target', "
        f"'image', '--json', '-k', '5', '--data-dir', {str(data)!r}]\n"
        "try:\n    runpy.run_module('api.cli', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", "import json\n" + probe], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    result, loaded = out.rsplit("\n", 2)[0], out.strip().splitlines()[-1]
    assert json.loads(loaded) == []
    ids = [r["id"] for r in json.loads(result)["results"]]
    q = create_encoder("starter-v2").encode_texts(["a red bus"])[0]
    assert ids == [int(i) + 1 for i in np.argsort(-(vecs @ q))[:5]]
