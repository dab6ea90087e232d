"""Data-parallel training on gloo: DDP semantics, per-rank resume, multi-node launch, lost ranks, teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from oatdeploy.checkpoint import read_checkpoint

THREADS_LEFT = """
import os, sys
from oatdeploy.trainer import TrainConfig, train
train(TrainConfig(out=sys.argv[1], lambdas=[0.0, 1.0], widths=[1.0], batch_size=16, pgd_steps=1, max_steps=1,
                  train_limit=64), progress=False)
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
with open(os.path.join(sys.argv[2], "threads-" + os.environ["RANK"]), "w") as f:
    f.write(" ".join(n for n in names if "gloo" in n))
"""

# Sandwich over 4 widths with a λ list without 0 (no BN_c ever used), then --single-bn (no BN_a ever used):
# straight to step 3, and to step 2 then resumed to 3. The group is made here, so train() runs three times in it.
TWO_RANK_RUNS = """
import shutil, sys
from pathlib import Path
import torch.distributed as dist
from oatdeploy.trainer import TrainConfig, train
dist.init_process_group("gloo")
root = Path(sys.argv[1])
base = dict(lambdas=[0.5, 1.0], widths=[0.25, 0.5, 0.75, 1.0], width_rule="sandwich", batch_size=16, pgd_steps=1,
            train_limit=128, arch="resnet20")
train(TrainConfig(**base, out=str(root / "straight"), max_steps=3), progress=False)
train(TrainConfig(**base, out=str(root / "split"), max_steps=2), progress=False)
dist.barrier()
if dist.get_rank() == 0:
    shutil.copy(root / "split" / "supernet.pt", root / "step2.pt")
dist.barrier()
train(TrainConfig(**base, out=str(root / "split"), max_steps=3), resume=True, progress=False)
train(TrainConfig(**base, out=str(root / "single-bn"), max_steps=1, dual_bn=False), progress=False)
dist.destroy_process_group()
"""


def torchrun_two(*args: str) -> None:
    """Run ARGS under torchrun with two CPU processes; both must exit 0."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_to_width(name: str, width: int) -> bool:
    """BN and FiLM parameters belong to one width (switchable layers); conv weights are shared by all."""
    return f".bns.{width}." in name or f".films.{width}." in name


def test_ddp_leaves_unused_parameters_alone_and_resumes_each_rank_exactly(tmp_path: Path) -> None:
    from oatdeploy.trainer import step_widths

    script = tmp_path / "runs.py"
    script.write_text(TWO_RANK_RUNS)
    torchrun_two(str(script), str(tmp_path))
    straight = read_checkpoint(tmp_path / "straight" / "supernet.pt")
    split = read_checkpoint(tmp_path / "split" / "supernet.pt")
    assert straight["trainer"]["step"] == split["trainer"]["step"] == 3
    assert len(split["trainer"]["rank_streams"]) == 2
    for key, value in straight["model"].items():  # each rank's λ, PGD and augmentation streams came back
        assert torch.equal(value, split["model"][key]), key

    before = read_checkpoint(tmp_path / "step2.pt")
    gen = torch.Generator()
    gen.set_state(before["trainer"]["width_gen"])
    used = step_widths(4, "sandwich", gen)
    assert len(used) == 3
    unused = ({0, 1, 2, 3} - set(used)).pop()
    # The optimizer state is indexed in its param-group order (FiLM has a group of its own), not the model's.
    from oatdeploy.checkpoint import model_from_config
    from oatdeploy.trainer import TrainConfig, make_optimizer

    model = model_from_config(before["config"])
    name_of = {id(p): n for n, p in model.named_parameters()}
    opt, _ = make_optimizer(model, TrainConfig(**before["config"]), total_steps=1)
    names = [name_of[id(p)] for group in opt.param_groups for p in group["params"]]
    momentum_before = before["trainer"]["optimizer"]["state"]
    momentum_after = split["trainer"]["optimizer"]["state"]
    for i, name in enumerate(names):
        moved = not torch.equal(before["model"][name], split["model"][name])
        if ".BN_c." in name:  # no λ = 0: no rank ever used the clean BN; weight decay must not have touched it
            assert not moved and torch.equal(split["model"][name], torch.ones_like(split["model"][name])
                                             if name.endswith("weight") else torch.zeros_like(split["model"][name]))
            assert i not in momentum_after, name
        elif private_to_width(name, unused):  # no rank ran this width in step 3: as one process, untouched
            assert not moved, name
            if i in momentum_before:
                assert torch.equal(momentum_before[i]["momentum_buffer"], momentum_after[i]["momentum_buffer"]), name
        elif any(private_to_width(name, w) for w in used) and ".BN_a." in name:
            assert moved, name
    single = read_checkpoint(tmp_path / "single-bn" / "supernet.pt")
    bn_a = [k for k in single["model"] if ".BN_a." in k and k.endswith(("weight", "bias"))]
    assert bn_a and all(torch.equal(single["model"][k], torch.ones_like(single["model"][k]) if k.endswith("weight")
                                    else torch.zeros_like(single["model"][k])) for k in bn_a)

    # The two-rank checkpoint continues in one process: same data order and schedule, fresh random streams.
    from oatdeploy.trainer import train

    train(TrainConfig(out=str(tmp_path / "split"), max_steps=4), resume=True, progress=False)
    one = read_checkpoint(tmp_path / "split" / "supernet.pt")
    assert one["trainer"]["step"] == 4 and one["trainer"]["scheduler"]["last_epoch"] == 4
    assert one["trainer"]["world_size"] == 1
    assert "seeded afresh" in (tmp_path / "split" / "train.log").read_text()


def launch_node(port: int, run: Path, *extra: str) -> subprocess.Popen[str]:
    """One torchrun "node" of a two-node c10d rendezvous on this machine, one training process in it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "oat-test",
           "-m", "oatdeploy.cli", "train", "--lambdas", "0,1", "--widths", "0.5,1", "--batch-size", "16",
           "--pgd-steps", "1", "--train-limit", "512", "--out", str(run), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_nodes_stop_on_sigterm_and_resume(tmp_path: Path) -> None:
    """Preemption as SLURM does it: SIGTERM to both launchers; every rank stops after the same step and saves."""
    run = tmp_path / "run"
    port = free_port()
    nodes = [launch_node(port, run, "--max-steps", "500") for _ in range(2)]
    deadline = time.monotonic() + 300
    while not (run / "config.json").is_file() and time.monotonic() < deadline:
        assert all(n.poll() is None for n in nodes), [n.communicate()[1][-2000:] for n in nodes]
        time.sleep(0.2)
    for n in nodes:
        os.killpg(n.pid, signal.SIGTERM)
    errs = [n.communicate(timeout=120)[1] for n in nodes]
    assert all(n.returncode != 0 for n in nodes)
    ckpt = read_checkpoint(run / "supernet.pt")
    step = ckpt["trainer"]["step"]
    assert 1 <= step < 500 and ckpt["trainer"]["world_size"] == 2 and len(ckpt["trainer"]["rank_streams"]) == 2
    joined = "\n".join(errs)
    assert f"stopped after step {step}/" in joined and "--resume" in joined, joined[-3000:]

    nodes = [launch_node(port, run, "--max-steps", str(step + 2), "--resume") for _ in range(2)]
    results = [n.communicate(timeout=300) for n in nodes]
    assert all(n.returncode == 0 for n in nodes), [r[1][-2000:] for r in results]
    assert read_checkpoint(run / "supernet.pt")["trainer"]["step"] == step + 2
    assert json.loads((run / "config.json").read_text())["world_size"] == 2


def test_a_rank_that_stops_answering_is_named(tmp_path: Path) -> None:
    """Rank 1 freezes (SIGSTOP): rank 0 gives up after --dist-timeout and says which rank stopped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    cmd = [sys.executable, "-m", "oatdeploy.cli", "train", "--lambdas", "0,1", "--batch-size", "16", "--pgd-steps",
           "1", "--train-limit", "512", "--max-steps", "500", "--dist-timeout", "4", "--out", str(tmp_path / "run")]
    ranks = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "RANK": str(r), "LOCAL_RANK": "0"}) for r in (0, 1)]
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "run" / "config.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        ranks[1].send_signal(signal.SIGSTOP)
        _, err = ranks[0].communicate(timeout=120)
    finally:
        ranks[1].kill()
        ranks[1].communicate()
    assert ranks[0].returncode == 1, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "rank 1 (last finished step" in lines[0] and "stopped answering" in lines[0], err[-3000:]
    assert "Traceback" not in err


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names come from Linux /proc")
def test_train_joins_gloo_threads_before_exit(tmp_path: Path) -> None:
    """Gloo workers still alive at interpreter shutdown abort the process now and then; train() must end them."""
    script = tmp_path / "run.py"
    script.write_text(THREADS_LEFT)
    torchrun_two(str(script), str(tmp_path / "ddp"), str(tmp_path))
    left = {rank: (tmp_path / f"threads-{rank}").read_text() for rank in (0, 1)}
    assert left == {0: "", 1: ""}, f"gloo threads alive after train(): {left}"


def torchrun_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`oatdeploy ARGS` under torchrun with two CPU processes, as the README launches it."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "oatdeploy.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_ddp_searches_for_unused_parameters_only_where_a_step_can_leave_one() -> None:
    from oatdeploy.trainer import TrainConfig, may_leave_unused

    assert not may_leave_unused(TrainConfig(widths=[1.0]), 8)  # OAT: every parameter in every step
    assert not may_leave_unused(TrainConfig(widths=[1.0], dual_bn=False, lambdas=[0.5, 1.0]), 8)
    assert may_leave_unused(TrainConfig(widths=[0.5, 1.0]), 8)  # the other width's own BN and FiLM
    assert may_leave_unused(TrainConfig(widths=[1.0], lambdas=[0.5, 1.0]), 8)  # no λ = 0: the clean BN
    assert may_leave_unused(TrainConfig(widths=[1.0], clean_share=1.0), 8)  # no λ > 0 sample: the adversarial BN
    assert may_leave_unused(TrainConfig(widths=[1.0], objective="sampled"), 8)  # a dropped term


@pytest.mark.slow
def test_torchrun_prints_no_torch_warning_and_a_bad_batch_once(tmp_path: Path) -> None:
    small = ["train", "--max-steps", "2", "--train-limit", "64", "--pgd-steps", "1"]
    result = torchrun_cli(*small, "--batch-size", "16", "--out", str(tmp_path / "oat"))  # one width: OAT
    assert result.returncode == 0, result.stderr[-3000:]
    assert "find_unused_parameters" not in result.stderr, result.stderr[-3000:]
    result = torchrun_cli(*small, "--batch-size", "15", "--out", str(tmp_path / "odd"))
    assert result.returncode != 0
    assert result.stderr.count("error: --batch-size 15 is the global batch") == 1, result.stderr[-3000:]
    assert not (tmp_path / "odd").exists()
