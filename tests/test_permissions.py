"""Files the workstation commands write keep the modes a plain copy would have (a service running as another
user must be able to read a run or a deployment)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest


def test_train_eval_export_write_group_and_other_readable_files(tmp_path: Path) -> None:
    from oatdeploy.cli import main

    run, deploy = tmp_path / "run", tmp_path / "deploy"
    commands = [
        ["train", "--lambdas", "0,1", "--widths", "0.5", "--batch-size", "16", "--pgd-steps", "1", "--train-limit",
         "32", "--max-steps", "1", "--out", str(run)],
        ["eval", str(run / "supernet.pt"), "--limit", "4", "--pgd-steps", "1"],
        ["export", str(run / "supernet.pt"), "--out", str(deploy), "--verify-samples", "4", "--calib-samples", "4",
         "--quiet"],
    ]
    old = os.umask(0o022)
    try:
        for args in commands:
            with pytest.raises(SystemExit) as exited:
                main(args)
            assert exited.value.code == 0, args
    finally:
        os.umask(old)
    written = [run, deploy, *run.rglob("*"), *deploy.rglob("*")]
    assert len([p for p in written if p.is_file()]) >= 8  # checkpoint, config, log, eval, manifest, ONNX, npz
    unreadable = [f"{p.relative_to(tmp_path)} {stat.filemode(p.stat().st_mode)}" for p in written
                  if p.stat().st_mode & (0o055 if p.is_dir() else 0o044) != (0o055 if p.is_dir() else 0o044)]
    assert unreadable == [], f"not readable by group/other under umask 022: {unreadable}"
