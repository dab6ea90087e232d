"""Every bad input of the exit-code rule: exit 2, one line on stderr naming problem and fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import oatdeploy_cli


def assert_usage_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) <= 3, result.stderr  # click's usage errors add a "Usage:/Try" header
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.mark.parametrize(("args", "needles"), [
    (["train", "--dataset", "imagenet", "--out", "{tmp}/r"], ["--dataset", "imagenet", "fmnist-mini"]),
    (["train", "--arch", "vgg", "--max-steps", "1", "--out", "{tmp}/r"], ["--arch", "vgg", "resnet20"]),
    (["train", "--lambdas", "0,2", "--out", "{tmp}/r"], ["[0, 1]"]),
    (["train", "--lambdas", "0,x", "--out", "{tmp}/r"], ["--lambdas", "comma-separated"]),
    (["train", "--widths", "0,1", "--out", "{tmp}/r"], ["(0, 1]"]),
    (["train", "--eps", "3", "--out", "{tmp}/r"], ["--eps"]),
    (["train", "--batch-size", "0", "--out", "{tmp}/r"], ["--batch-size"]),
    (["train", "--dataset", "fashion-mnist", "--data-dir", "{tmp}", "--out", "{tmp}/r"],
     ["train-images-idx3-ubyte", "dataset-fashion-mnist"]),
    (["train", "--dataset", "cifar10", "--out", "{tmp}/r"], ["--data-dir"]),
    (["train", "--resume", "--out", "{tmp}/nothing"], ["--resume", "no checkpoint"]),
    (["train", "--out", "{tmp}/r", "--batch-size", "100000"], ["lower --batch-size"]),
    (["eval", "{tmp}/missing.pt"], ["checkpoint not found"]),
    (["eval", "{tmp}/junk.pt"], ["not a readable oatdeploy checkpoint"]),
    (["bench", "train-step", "--input-shape", "3,32"], ["C,H,W"]),
    (["nonsense"], ["No such command"]),
])
def test_bad_input_exits_2_with_one_clear_line(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    result = oatdeploy_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_usage_error(result, *needles)
    assert not (tmp_path / "r" / "supernet.pt").exists()


def test_eval_on_a_checkpoint_whose_data_is_missing(tiny_ckpt: Path, tmp_path: Path) -> None:
    result = oatdeploy_cli("eval", str(tiny_ckpt), "--data-dir", str(tmp_path), "--out", str(tmp_path / "e.json"),
                           "--limit", "32", "--pgd-steps", "2")
    assert result.returncode == 0  # fmnist-mini is embedded: --data-dir does not matter
    report = json.loads((tmp_path / "e.json").read_text())
    assert len(report["results"]) == 6 and report["attack"]["steps"] == 2 and report["num_samples"] == 32


def test_help_and_version_exit_0() -> None:
    assert oatdeploy_cli("--help").returncode == 0
    assert "oatdeploy" in oatdeploy_cli("--version").stdout


def test_every_train_config_field_is_an_option_with_help() -> None:
    from oatdeploy.commands.train import train
    from oatdeploy.config import user_fields

    options = {p.name: p for p in train.params}
    missing = [f.name for f in user_fields() if f.name not in options or not options[f.name].help]
    assert not missing, f"TrainConfig fields without an option or its help: {missing}"


@pytest.fixture()
def run_copy(tiny_ckpt: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_ckpt.parent, tmp_path / "run"))


def test_resume_refuses_options_that_contradict_the_checkpoint(run_copy: Path) -> None:
    before = (run_copy / "supernet.pt").read_bytes()
    result = oatdeploy_cli("train", "--resume", "--out", str(run_copy), "--lr", "0.05", "--single-bn",
                           "--widths", "0.5,1", "--max-steps", "4")
    assert_usage_error(result, "--lr 0.05", "--single-bn", "contradict", "--dual-bn", "--lr 0.1")
    assert "--widths" not in result.stderr  # the same value as the checkpoint's is not a contradiction
    assert (run_copy / "supernet.pt").read_bytes() == before


def test_resume_accepts_the_original_command_line(run_copy: Path) -> None:
    """A requeued job reruns its script with --resume added: the same options must be accepted."""
    result = oatdeploy_cli("train", "--resume", "--out", str(run_copy), "--lambdas", "0,0.4,1", "--widths", "0.5,1",
                           "--batch-size", "32", "--pgd-steps", "2", "--train-limit", "1024", "--max-steps", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_copy / "config.json").read_text())["max_steps"] == 4


def test_config_replays_a_run_exactly(tiny_ckpt: Path, tmp_path: Path) -> None:
    import torch

    from oatdeploy.checkpoint import read_checkpoint

    result = oatdeploy_cli("train", "--config", str(tiny_ckpt.parent / "config.json"), "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr[-2000:]
    a, b = read_checkpoint(tiny_ckpt), read_checkpoint(tmp_path / "r" / "supernet.pt")
    assert {k: v for k, v in a["config"].items() if k != "out"} == {k: v for k, v in b["config"].items() if k != "out"}
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


@pytest.mark.parametrize(("config", "extra", "needles"), [
    ({"lr": 0.1, "colour": "red"}, [], ["unknown field(s) colour"]),
    ({"lr": -1}, [], ["--lr", "-1"]),
    ({"lr": 0.1}, ["--resume"], ["--config", "--resume"]),
])
def test_bad_config_files_exit_2(tmp_path: Path, config: dict, extra: list[str], needles: list[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = oatdeploy_cli("train", "--config", str(path), "--out", str(tmp_path / "r"), *extra)
    assert_usage_error(result, *needles)
    assert not (tmp_path / "r" / "supernet.pt").exists()
