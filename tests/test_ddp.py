"""Data-parallel training: two gloo processes under torchrun, rank 0 writes one consistent checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import oatdeploy


def test_two_process_gloo_run(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "oatdeploy.cli", "train", "--lambdas", "0,1", "--widths", "0.5,1", "--batch-size", "32",
           "--pgd-steps", "1", "--max-steps", "3", "--train-limit", "256", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    sn = oatdeploy.load_checkpoint(out / "supernet.pt")
    x = torch.rand(2, 1, 28, 28)
    assert torch.isfinite(sn.predict(x, 1.0, 0.5)).all()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "supernet.pt", "train.log"]
