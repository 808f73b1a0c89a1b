"""The `crossmedia` command line through typer's CliRunner: index, info, search (JSON shape,
self-retrieval of every photo), refusal to mix models, $CROSSMEDIA_DATA_DIR."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CAPTIONS, N_GOOD, build_scenario, coco_entries, sqlite_url, write_manifest
from typer.testing import CliRunner

from api.cli import app, main
from retrieval.catalogue import Catalogue
from retrieval.encoders import create_encoder, register_encoder
from retrieval.encoders.tiny import create_tiny
from retrieval.errors import SpaceMismatchError

OTHER_MODEL = "tiny-test-cli-other"  # a second space, registered only by this test module
try:
    register_encoder(OTHER_MODEL)(create_tiny)
except ValueError:
    pass  # already registered in this process

RESULT_KEYS = {"id", "modality", "score", "path", "text", "attrs"}


@pytest.fixture(autouse=True)
def _cli_env(monkeypatch: pytest.MonkeyPatch, tiny_encoder: Any) -> None:
    """No stray catalogue settings; "tiny-test" resolves to the session's encoder (building a new
    one per command costs a second of tokenizer set-up); other names go to the registry."""
    import retrieval.encoders as encoders

    monkeypatch.delenv("CROSSMEDIA_DB_URL", raising=False)
    monkeypatch.delenv("CROSSMEDIA_DATA_DIR", raising=False)

    def fast(name: str = "starter", device: str | None = None) -> Any:
        return tiny_encoder if name == "tiny-test" else create_encoder(name, device=device)

    monkeypatch.setattr(encoders, "create_encoder", fast)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)


def ok_json(*args: str) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def cli_catalogue(tmp_path_factory: pytest.TempPathFactory, tiny_encoder: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cli")
    manifest, good = build_scenario(root)
    data_dir = root / "data"
    mp = pytest.MonkeyPatch()
    try:
        import retrieval.encoders as encoders

        mp.delenv("CROSSMEDIA_DB_URL", raising=False)
        mp.setattr(encoders, "create_encoder", lambda name, device=None: tiny_encoder)
        result = CliRunner().invoke(
            app,
            [
                "index",
                str(manifest),
                "--data-dir",
                str(data_dir),
                "--model",
                "tiny-test",
                "--batch-size",
                "7",
                "--json",
            ],
        )
    finally:
        mp.undo()
    assert result.exit_code == 0, (result.output, result.exception)
    return {
        "data_dir": data_dir,
        "manifest": manifest,
        "good": good,
        "report": json.loads(result.stdout),
    }


def test_index_report(cli_catalogue: dict[str, Any]) -> None:
    report = cli_catalogue["report"]
    assert report["entries"] == N_GOOD + 4
    assert report["added"] == {"image": N_GOOD, "text": N_GOOD * CAPTIONS}
    assert sorted(f["where"] for f in report["failed"]) == [
        f"items.jsonl:{n}" for n in (16, 17, 18, 19)
    ]
    assert set(report["seconds"]) == {"read", "decode", "encode", "write"}


def test_index_text_report_lists_skipped_files(
    cli_catalogue: dict[str, Any], tmp_path: Path
) -> None:
    result = invoke(
        "index", cli_catalogue["manifest"], "--data-dir", tmp_path / "d", "--model", "tiny-test"
    )
    assert result.exit_code == 0, result.output
    assert f"added {N_GOOD} image, {N_GOOD * CAPTIONS} text" in result.stdout
    assert "4 skipped" in result.stdout
    assert "skipped items.jsonl:18" in result.stderr and "missing.jpg" in result.stderr


def test_info_counts(cli_catalogue: dict[str, Any]) -> None:
    info = ok_json("info", "--data-dir", cli_catalogue["data_dir"])
    assert info["counts"] == {"image": N_GOOD, "text": N_GOOD * CAPTIONS}
    assert info["skipped_files"] == 4
    assert info["space"]["model"] == "tiny-test" and info["space"]["dim"] == 32
    assert info["indexes"]["image"]["count"] == N_GOOD
    text_index = info["indexes"]["text"]
    assert (text_index["factory"], text_index["count"]) == ("Flat", N_GOOD * CAPTIONS)
    assert text_index["bytes"] > 0 and text_index["delta_bytes"] >= 0
    assert text_index["search"] == {"exact": True, "recall_at_10": 1.0}
    text = invoke("info", "--data-dir", cli_catalogue["data_dir"])
    assert text.exit_code == 0
    assert "Skipped files recorded: 4" in text.stdout and "trunc.jpg" in text.stdout


def test_rerun_through_the_cli_adds_nothing(cli_catalogue: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(cli_catalogue["data_dir"], data_dir)
    report = ok_json(
        "index", cli_catalogue["manifest"], "--data-dir", data_dir
    )  # model from catalogue
    assert report["added"] == {} and report["unchanged"] == N_GOOD * (1 + CAPTIONS)
    assert ok_json("info", "--data-dir", data_dir)["skipped_files"] == 4


def test_search_json_shape_text_target(cli_catalogue: dict[str, Any]) -> None:
    caption = cli_catalogue["good"][3]["captions"][1]
    out = ok_json(
        "search",
        "--text",
        caption,
        "--target",
        "text",
        "-k",
        "5",
        "--data-dir",
        cli_catalogue["data_dir"],
    )
    assert {"query", "results"} <= set(out)
    assert out["query"] == caption
    assert len(out["results"]) == 5
    for r in out["results"]:
        assert set(r) == RESULT_KEYS
        assert isinstance(r["id"], int) and isinstance(r["score"], float)
        assert r["modality"] == "text" and isinstance(r["text"], str) and r["path"] is None
        assert isinstance(r["attrs"], dict)
    assert out["results"][0]["text"] == caption
    assert out["results"][0]["attrs"] == {"caption_of": cli_catalogue["good"][3]["id"]}
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)


def test_search_json_image_target(cli_catalogue: dict[str, Any]) -> None:
    out = ok_json(
        "search",
        "--text",
        "a dog",
        "--target",
        "image",
        "-k",
        "20",
        "--data-dir",
        cli_catalogue["data_dir"],
    )
    assert len(out["results"]) == N_GOOD  # k > n: every photo once, no padding
    assert len({r["id"] for r in out["results"]}) == N_GOOD
    assert all(
        r["modality"] == "image" and Path(r["path"]).is_file() and r["text"] is None
        for r in out["results"]
    )


def test_every_indexed_image_finds_itself_first(cli_catalogue: dict[str, Any]) -> None:
    data_dir = cli_catalogue["data_dir"]
    with Catalogue.open(data_dir, db_url=sqlite_url(data_dir), create=False) as cat:
        images = list(cat.store.iter_items("image"))
    assert len(images) == N_GOOD
    for rec in images:
        out = ok_json(
            "search",
            "--image",
            rec.path,
            "--target",
            "image",
            "-k",
            "2",  # type: ignore[arg-type]
            "--no-rerank",
            "--data-dir",
            data_dir,
        )
        assert out["query"] == {"image": rec.path}
        first, second = out["results"]
        assert first["id"] == rec.id and first["path"] == rec.path
        assert first["score"] == pytest.approx(1.0, abs=1e-4) and second["score"] < first["score"]


def test_plain_search_output(cli_catalogue: dict[str, Any]) -> None:
    caption = cli_catalogue["good"][0]["captions"][0]
    result = invoke("search", "--text", caption, "-k", "3", "--data-dir", cli_catalogue["data_dir"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").splitlines()
    assert len(lines) == 3 and lines[0].startswith("  1. ") and caption in lines[0]


def test_other_model_is_refused(cli_catalogue: dict[str, Any]) -> None:
    data_dir = cli_catalogue["data_dir"]
    for args in (
        ["search", "--text", "a dog", "--model", OTHER_MODEL, "--data-dir", data_dir],
        ["index", cli_catalogue["manifest"], "--model", OTHER_MODEL, "--data-dir", data_dir],
    ):
        result = invoke(*args)
        assert result.exit_code != 0
        assert isinstance(result.exception, SpaceMismatchError)
        message = str(result.exception)
        assert "'tiny-test'" in message and repr(OTHER_MODEL) in message and "--data-dir" in message
    assert ok_json("info", "--data-dir", data_dir)["counts"] == {
        "image": N_GOOD,
        "text": N_GOOD * CAPTIONS,
    }


def test_main_turns_errors_into_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setattr(
        sys, "argv", ["crossmedia", "search", "--text", "x", "--data-dir", str(missing)]
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No catalogue at") and "crossmedia index" in err
    assert not missing.exists()


def test_search_needs_exactly_one_query(cli_catalogue: dict[str, Any]) -> None:
    result = invoke("search", "--data-dir", cli_catalogue["data_dir"])
    assert result.exit_code == 2 and "exactly one of" in result.output
    both = invoke(
        "search",
        "--text",
        "x",
        "--image",
        cli_catalogue["manifest"],
        "--data-dir",
        cli_catalogue["data_dir"],
    )
    assert both.exit_code == 2


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "from-env"
    monkeypatch.setenv("CROSSMEDIA_DATA_DIR", str(data_dir))
    manifest = write_manifest(tmp_path / "items.jsonl", coco_entries(3, skip=40))
    report = ok_json("index", manifest, "--model", "tiny-test")
    assert report["added"] == {"image": 3, "text": 3 * CAPTIONS}
    assert (data_dir / "catalogue.db").is_file() and (data_dir / "index" / "image.faiss").is_file()
    info = ok_json("info")
    assert info["data_dir"] == str(data_dir.resolve())
    assert info["counts"] == {"image": 3, "text": 3 * CAPTIONS}
    out = ok_json("search", "--text", "anything", "--target", "image", "-k", "3")
    assert len(out["results"]) == 3


def test_models_lists_the_tiny_encoder() -> None:
    result = invoke("models")
    assert result.exit_code == 0
    names = result.stdout.split()
    assert "tiny-test" in names and "starter" in names


def test_index_factory_option(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "items.jsonl", coco_entries(7, skip=50))
    data_dir = tmp_path / "data"
    ok_json(
        "index",
        manifest,
        "--model",
        "tiny-test",
        "--index-factory",
        "IVF2,Flat",
        "--data-dir",
        data_dir,
    )
    info = ok_json("info", "--data-dir", data_dir)
    assert info["indexes"]["image"]["factory"] == "IVF2,Flat"
    text_index = info["indexes"]["text"]
    assert (text_index["factory"], text_index["count"]) == ("IVF2,Flat", 7 * CAPTIONS)
    search = text_index["search"]  # the knob tuned at build time, with the recall it gave
    assert search["exact"] is False and search["nprobe"] in (1, 2) and search["queries"] > 0


def test_bad_index_factory_is_refused_and_not_stored(
    cli_catalogue: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    data_dir = tmp_path / "data"
    shutil.copytree(cli_catalogue["data_dir"], data_dir)
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "crossmedia",
            "index",
            str(cli_catalogue["manifest"]),
            "--index-factory",
            "IVF,Nope",
            "--data-dir",
            str(data_dir),
        ],
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert "Bad FAISS factory string 'IVF,Nope'" in capsys.readouterr().err
    out = ok_json(
        "search", "--text", "a cat", "--target", "image", "-k", "3", "--data-dir", data_dir
    )
    assert len(out["results"]) == 3


def test_search_mode_where_and_matched(cli_catalogue: dict[str, Any]) -> None:
    """Issue 14 through the CLI: hybrid by default for words, captions as evidence for their
    photo, filters in the engine (--where), and the mode that ran in the JSON."""
    caption = cli_catalogue["good"][2]["captions"][0]
    d = cli_catalogue["data_dir"]
    out = ok_json("search", "--text", caption, "--target", "image", "-k", "3", "--data-dir", d)
    assert out["mode"] == "hybrid"
    photo = str(Path(cli_catalogue["good"][2]["image"]).resolve())
    mine = [r for r in out["results"] if str(Path(r["path"]).resolve()) == photo]
    assert mine and any(m["text"] == caption for m in mine[0]["matched"]), out["results"]
    vec = ok_json("search", "--text", caption, "--mode", "vector", "-k", "3", "--data-dir", d)
    assert vec["mode"] == "vector"
    none = ok_json(
        "search", "--text", caption, "--where", "width<0", "--target", "image", "--data-dir", d
    )
    assert none["results"] == []
    bad = invoke("search", "--text", "x", "--where", "no operator here", "--data-dir", d)
    assert "FIELD=VALUE" in str(bad.exception)  # main() prints it as one line and exits 2
