"""The training commands (api/cli_train.py): registered with typed options, --out required,
caches and data roots never taken from the working directory, errors that say the fix.
No model is loaded: every case fails (or answers) before a job starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from api.cli_train import register
from indexer.align import AlignConfig, HeadConfig
from indexer.train_reranker import TrainRerankerConfig
from indexer.training.paths import TrainingDataMissing, cache_dir, cache_root, default_data_root


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.mark.parametrize("command", ["align", "align-audio", "train-reranker"])
def test_out_is_required(app: typer.Typer, command: str) -> None:
    args = [command] + (["--manifest", "m.jsonl"] if command == "align" else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--out" in result.output


def test_align_refuses_a_non_safetensors_out(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["align", "--manifest", "m.jsonl", "--out", str(tmp_path / "h.pt")]
    )
    assert result.exit_code == 2
    assert ".safetensors" in result.output


@pytest.mark.parametrize("command", ["align-audio", "train-reranker"])
def test_missing_data_root_names_the_fix(app: typer.Typer, command: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    args = [command, "--out", str(tmp_path / "x.safetensors"), "--data-root", str(missing)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, TrainingDataMissing)
    assert "--data-root" in str(result.exception) and "CROSSMEDIA_TRAIN_DATA" in str(
        result.exception
    )
    assert not (tmp_path / "x.safetensors").exists()


def test_cache_and_data_roots_do_not_follow_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CROSSMEDIA_CACHE_DIR", raising=False)
    monkeypatch.delenv("CROSSMEDIA_TRAIN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cache_root().is_absolute() and tmp_path not in cache_root().parents
    assert default_data_root().is_absolute() and tmp_path not in default_data_root().parents
    monkeypatch.setenv("CROSSMEDIA_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("CROSSMEDIA_TRAIN_DATA", str(tmp_path / "d"))
    assert cache_dir("features") == tmp_path / "c" / "features"
    assert cache_dir("features", tmp_path / "given") == tmp_path / "given" / "features"
    assert default_data_root() == tmp_path / "d"


def test_recorded_commands_name_the_typer_commands() -> None:
    align = AlignConfig([Path("a/items.jsonl")], Path("h.safetensors"), HeadConfig(lr=2e-3))
    assert align.command() == (
        "crossmedia align --manifest a/items.jsonl --out h.safetensors --epochs 20 --seed 0 --lr 0.002"
    )
    rerank = TrainRerankerConfig(
        out=Path("r.safetensors"), hub_folds=0, stage1_from=Path("v1.safetensors")
    )
    assert rerank.command() == (
        "crossmedia train-reranker --out r.safetensors --hub-folds 0 --stage1-from v1.safetensors"
    )


def test_align_distill_flags_reach_the_job_and_its_recorded_command(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heads-v2 command line (as its model card gives it) builds the config it was trained
    with, and the command the job records parses back to the same config."""
    import indexer.align as align_pkg

    seen: list[AlignConfig] = []

    def fake_run(cfg: AlignConfig):
        seen.append(cfg)
        raise typer.Exit(0)

    monkeypatch.setattr(align_pkg, "run_align", fake_run)
    sets = ["coco_mini", "tuxpaint", "cifar10", "flickr8k"]
    args = ["align"] + [a for s in sets for a in ("--manifest", f"../shared/data/{s}/items.jsonl")]
    args += ["--out", str(tmp_path / "starter-heads-v2.safetensors"), "--card", "v2.md"]
    args += ["--epochs", "20", "--seed", "0", "--distill", "1", "--batch-size", "1024"]
    args += ["--lr", "2e-3", "--dropout", "0.6"]
    assert CliRunner().invoke(app, args).exit_code == 0
    want = HeadConfig(batch_size=1024, lr=2e-3, dropout=0.6, distill=1.0)
    assert seen[0].head == want and seen[0].card == Path("v2.md")
    assert [p.parent.name for p in seen[0].manifests] == sets
    recorded = seen[0].command()
    assert "--distill 1.0" in recorded and "--batch-size 1024" in recorded
    assert CliRunner().invoke(app, recorded.split()[1:]).exit_code == 0
    assert seen[1] == seen[0]
    defaults = AlignConfig([Path("a/items.jsonl")], Path("h.safetensors")).command()
    assert "distill" not in defaults and "batch-size" not in defaults and "card" not in defaults
