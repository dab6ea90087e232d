"""The same results on a CUDA GPU as on the CPU: the training step (eager and captured as a CUDA graph), the
supernet, evaluation and export. Skipped without CUDA; `benchmarks/gpu_check.py` runs them on a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from oatdeploy.checkpoint import load_supernet
from oatdeploy.config import TrainConfig
from oatdeploy.data import load_dataset
from oatdeploy.lambdas import build_table
from oatdeploy.models import create_model
from oatdeploy.trainer import OATStep, make_optimizer
from tests.conftest import TINY, train_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def run_steps(device: str, steps: int = 3, **overrides: object) -> tuple[list[float], dict[str, torch.Tensor]]:
    """`steps` fp32 OAT steps of the TINY recipe from the same initial weights; losses and final weights (CPU)."""
    cfg = TrainConfig(**{**TINY, "lr": 0.05, "eps": 0.1, "num_classes": 10, "input_shape": [1, 28, 28], "out": "",
                         "amp": False, "device": device, **overrides})
    torch.manual_seed(0)
    model = create_model("resnet20", widths=cfg.widths, num_classes=10, in_channels=1).train().to(device)
    step = OATStep(model, cfg, build_table("rand", cfg.lambdas), torch.device(device), seed=0)
    opt, _ = make_optimizer(model, cfg, total_steps=10)
    data = load_dataset("fmnist-mini", limit=32 * steps)
    losses = []
    for b in range(steps):
        opt.zero_grad(set_to_none=True)
        losses.append(step(data.x[32 * b : 32 * (b + 1)], data.y[32 * b : 32 * (b + 1)])["loss"])
        opt.step()
    return [float(v) for v in losses], {k: v.detach().cpu() for k, v in model.state_dict().items()}


def assert_same_training(a: tuple[list[float], dict[str, torch.Tensor]],
                         b: tuple[list[float], dict[str, torch.Tensor]], tol: float) -> None:
    assert a[0] == pytest.approx(b[0], rel=tol), (a[0], b[0])
    for key, value in a[1].items():
        assert torch.allclose(value.float(), b[1][key].float(), atol=tol, rtol=tol), key


@pytest.fixture(autouse=True)
def ieee_fp32() -> None:
    """CPU and GPU compared in full fp32 (cuDNN's TF32 keeps about three digits)."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("objective", ["weighted", "sampled"])
def test_the_training_step_on_cuda_computes_what_it_computes_on_the_cpu(objective: str) -> None:
    assert_same_training(run_steps("cuda", objective=objective), run_steps("cpu", objective=objective), 1e-3)


@pytest.mark.parametrize("objective", ["weighted", "sampled"])
def test_the_captured_step_replays_what_the_eager_step_computes(objective: str) -> None:
    """cuda_graphs: warm-up, capture and replay give the eager step's losses and weights (sampled: two graphs)."""
    eager = run_steps("cuda", steps=4, objective=objective)
    graphed = run_steps("cuda", steps=4, objective=objective, cuda_graphs=True)
    assert_same_training(graphed, eager, 1e-4)


def test_the_step_never_waits_for_the_gpu() -> None:
    """No host synchronisation inside the step: torch raises on any synchronising call in this mode."""
    cfg = TrainConfig(**{**TINY, "eps": 0.1, "num_classes": 10, "input_shape": [1, 28, 28], "out": "", "amp": False})
    model = create_model("resnet20", widths=cfg.widths, num_classes=10, in_channels=1).train().cuda()
    step = OATStep(model, cfg, build_table("rand", cfg.lambdas), torch.device("cuda"), seed=0)
    data = load_dataset("fmnist-mini", limit=32)
    step(data.x, data.y)  # first use: cuDNN and the allocator set themselves up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            step(data.x, data.y)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_a_supernet_moved_to_cuda_folds_and_predicts_as_on_the_cpu(tiny_ckpt: Path) -> None:
    cpu, gpu = load_supernet(tiny_ckpt), load_supernet(tiny_ckpt).to("cuda")
    x = load_dataset("fmnist-mini", split="test", limit=16).x
    for lam in cpu.lambdas:
        assert torch.allclose(gpu.predict(x, lam, 1.0).cpu(), cpu.predict(x, lam, 1.0), atol=1e-4)
        folded = gpu.subnet(lam, 0.5)  # failed before Supernet.to moved the encoding table
        assert torch.allclose(folded(x.cuda()).cpu(), cpu.subnet(lam, 0.5)(x), atol=1e-4)


def test_eval_on_cuda_gives_the_cpus_sa_and_ra(tiny_ckpt: Path, tmp_path: Path, cli) -> None:
    common = ["eval", str(tiny_ckpt), "--limit", "256", "--pgd-steps", "5"]
    for device in ("cpu", "cuda"):
        result = cli(*common, "--device", device, "--out", str(tmp_path / f"{device}.json"))
        assert result.returncode == 0, result.stderr
    cpu, gpu = (json.loads((tmp_path / f"{d}.json").read_text())["results"] for d in ("cpu", "cuda"))
    for a, b in zip(cpu, gpu, strict=True):
        assert a["clean_acc"] == b["clean_acc"], (a["lambda"], a["width"])
        # PGD takes sign(∇): a gradient within float error of zero may point the other way on another device
        assert abs(a["robust_acc"] - b["robust_acc"]) <= 2 / 256, (a["lambda"], a["robust_acc"], b["robust_acc"])


def test_training_with_cuda_graphs_then_export_on_cuda_passes_parity(tmp_path: Path, cli) -> None:
    ckpt = train_run(tmp_path / "run", max_steps=4, device="cuda", cuda_graphs=True, amp=False)
    result = cli("export", str(ckpt), "--out", str(tmp_path / "deploy"), "--device", "cuda", "--verify-samples", "64",
                 "--calib-samples", "32", "--quiet")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "deploy" / "manifest.json").read_text())
    assert len(manifest["variants"]) == len(TINY["lambdas"]) * len(TINY["widths"])
