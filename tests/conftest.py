"""Shared fixtures: real supernets trained for a few steps on the embedded data, written to disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = {"dataset": "fmnist-mini", "arch": "resnet20", "lambdas": [0.0, 0.4, 1.0], "widths": [0.5, 1.0],
        "batch_size": 32, "pgd_steps": 2, "train_limit": 1024}


def train_run(out: Path, **overrides: object) -> Path:
    from oatdeploy.trainer import TrainConfig, train

    return train(TrainConfig(**{**TINY, **overrides, "out": str(out)}), progress=False)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint after 3 steps: weights are near init, good for exactness and plumbing."""
    return train_run(tmp_path_factory.mktemp("tiny"), max_steps=3)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder (supernet.pt, config.json, eval.json) after 30 steps, evaluated with PGD-5 on 128 images."""
    from oatdeploy.evaluate import run_evaluation

    run = tmp_path_factory.mktemp("trained")
    ckpt = train_run(run, max_steps=30)
    report = run_evaluation(ckpt, pgd_steps=5, limit=128, progress=False)
    (run / "eval.json").write_text(json.dumps(report))
    return run


def export_run(run: Path, out: Path, mode: str = "folded", samples: int = 64, adv_steps: int = 3) -> Path:
    """Export a run's checkpoint to `out` with `samples` verification and calibration images."""
    from oatdeploy.export.pipeline import export_deployment

    export_deployment(run / "supernet.pt", out, mode=mode, verify_samples=samples, calib_samples=samples,
                      adv_steps=adv_steps, progress=False)
    return out


@pytest.fixture(scope="session")
def profiled_deploy(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run exported (folded) and profiled at batch 1 on this machine. Tests must not modify it."""
    from oatdeploy.runtime import Deployment

    out = export_run(trained_run, tmp_path_factory.mktemp("rt") / "fm", samples=32, adv_steps=2)
    Deployment.load(out).profile(batches=(1,), min_runs=5, min_seconds=0.0, warmup=2)
    return out


def oatdeploy_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess (exit codes and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "oatdeploy.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """The console entry point run in this process (exit code, stdout, stderr as a user sees them), without the
    torch import a subprocess pays per call."""
    from oatdeploy.cli import main

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, exited.value.code, out.out, out.err)

    return run
