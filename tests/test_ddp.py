"""Data-parallel training: two gloo processes under torchrun, rank 0 writes one consistent checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import oatdeploy

THREADS_LEFT = """
import os, sys
from oatdeploy.trainer import TrainConfig, train
train(TrainConfig(out=sys.argv[1], lambdas=[0.0, 1.0], widths=[1.0], batch_size=16, pgd_steps=1, max_steps=1,
                  train_limit=64), progress=False)
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
with open(os.path.join(sys.argv[2], "threads-" + os.environ["RANK"]), "w") as f:
    f.write(" ".join(n for n in names if "gloo" in n))
"""


def torchrun_two(*args: str) -> None:
    """Run ARGS under torchrun with two CPU processes; both must exit 0."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_process_gloo_run(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    torchrun_two("-m", "oatdeploy.cli", "train", "--lambdas", "0,1", "--widths", "0.5,1", "--batch-size", "32",
                 "--pgd-steps", "1", "--max-steps", "3", "--train-limit", "256", "--out", str(out))
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    sn = oatdeploy.load_checkpoint(out / "supernet.pt")
    x = torch.rand(2, 1, 28, 28)
    assert torch.isfinite(sn.predict(x, 1.0, 0.5)).all()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "supernet.pt", "train.log"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names come from Linux /proc")
def test_train_joins_gloo_threads_before_exit(tmp_path: Path) -> None:
    """Gloo workers still alive at interpreter shutdown abort the process now and then; train() must end them."""
    script = tmp_path / "run.py"
    script.write_text(THREADS_LEFT)
    torchrun_two(str(script), str(tmp_path / "ddp"), str(tmp_path))
    left = {rank: (tmp_path / f"threads-{rank}").read_text() for rank in (0, 1)}
    assert left == {0: "", 1: ""}, f"gloo threads alive after train(): {left}"
