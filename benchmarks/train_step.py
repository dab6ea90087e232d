"""Training-step time, ours vs the paper's reference code, side by side in one process, lever by lever.

    git -C <mirror of VITA-Group/Once-for-All-Adversarial-Training> archive HEAD | tar -x -C /tmp/oat_ref
    python benchmarks/train_step.py --reference-dir /tmp/oat_ref [--variants ours,reference,...]

Every variant does the same work: element-wise λ sampling (⌈N/6⌉ clean samples first, the paper's share,
not our default half), PGD with random start on the λ > 0 samples with the model in eval mode, the clean
and adversarial forward passes through dual BN and FiLM, one classifier, the weighted loss, backward and an
SGD update, on random 3×32×32 data (ResNet-34,
batch 16, PGD-3 by default). The reference step is the body of its OAT.py (`--efficient`) loop calling
its own model, sampler and PGD. Its code calls `.cuda()` unconditionally; on a machine without a GPU
this script maps `.cuda()` to a no-op for the reference so that its step runs unchanged on the CPU.

`ours` is the step as `oatdeploy train` runs it on this device; the other variants switch one lever
(VARIANTS below) to show what it is worth (`sampled` changes the work itself: one loss term per λ > 0
sample, so fewer PGD examples and forward passes for the same expected loss). Variants are built
first (compiling ones compile during their warm-up steps), then timed in rounds that cycle through all
of them, so drift in machine load hits each alike; the report gives each variant's median and its
ratio to the reference's.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import oatdeploy.trainer
from oatdeploy.bench import time_steps, train_step
from oatdeploy.runtime.atomic import atomic_write_json
from oatdeploy.runtime.device import cpu_name, gpu_name

# name -> (what it shows, TrainConfig levers). `attack-param-grads` runs PGD with parameter gradients on
# (the lever it shows is keeping them off, as both codes do).
# The reference's λ = 0 share and single classifier, so that ours does the reference step's work.
PAPER_WORK: dict[str, Any] = {"clean_share": None, "lambda_head": False, "objective": "weighted"}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ours": ("as `oatdeploy train` runs here (fp32 on a CPU, bf16 autocast on CUDA; NCHW)", {}),
    "bf16": ("--amp-cpu: bf16 autocast on a CPU that computes bf16 natively", {"amp_cpu": True}),
    "channels-last": ("--channels-last", {"channels_last": True}),
    "compile": ("--compile: torch.compile of the model (training and attack)", {"compile": True}),
    "bf16-compile": ("--amp-cpu --compile", {"amp_cpu": True, "compile": True}),
    "attack-param-grads": ("PGD with parameter gradients on (autograd.grad still computes none of them)", {}),
    "sampled": ("--loss sampled: one loss term per λ > 0 sample, the adversarial one with probability λ "
                "(the same expected loss; less work than the others)", {"objective": "sampled"}),
    "fp32": ("--no-amp: fp32 on CUDA too", {"amp": False}),
    "graphs": ("--cuda-graphs: the step captured once and replayed (on a CPU: eager, with a warning)",
               {"cuda_graphs": True}),
    "graphs-fp32": ("--cuda-graphs --no-amp", {"cuda_graphs": True, "amp": False}),
    "graphs-sampled": ("--cuda-graphs --no-amp --objective sampled",
                       {"cuda_graphs": True, "amp": False, "objective": "sampled"}),
}


@contextlib.contextmanager
def eval_only(model: torch.nn.Module) -> Iterator[None]:
    """frozen_eval without freezing the parameters: what the attack costs when they require gradients."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def ours(name: str, args: argparse.Namespace, shape: tuple[int, int, int]) -> Callable[[], None]:
    step, _ = train_step(args.arch, args.batch_size, args.pgd_steps, shape, (1.0,), args.device,
                         **{**PAPER_WORK, **VARIANTS[name][1]})
    if name != "attack-param-grads":
        return step

    def unfrozen() -> None:
        saved = oatdeploy.trainer.frozen_eval
        oatdeploy.trainer.frozen_eval = eval_only
        try:
            step()
        finally:
            oatdeploy.trainer.frozen_eval = saved

    return unfrozen


def reference(ref_dir: Path, batch_size: int, pgd_steps: int, input_shape: tuple[int, int, int],
              device: torch.device) -> Callable[[], None]:
    sys.path.insert(0, str(ref_dir))
    if device.type == "cpu":
        torch.Tensor.cuda = lambda self, *a, **k: self  # the reference hard-codes .cuda()
        torch.nn.Module.cuda = lambda self, *a, **k: self
    from attacks.pgd import PGD
    from models.cifar10.resnet_OAT import ResNet34OAT
    from utils.context import ctx_noparamgrad_and_eval
    from utils.sample_lambda import element_wise_sample_lambda

    lambdas = [0.0, 0.1, 0.2, 0.3, 0.4, 1.0]
    encoding_mat, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((128, 128)))
    model = ResNet34OAT(use2BN=True, FiLM_in_channels=128).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    attacker = PGD(eps=8 / 255, steps=pgd_steps, use_FiLM=True)
    imgs = torch.rand(batch_size, *input_shape, device=device)
    labels = torch.randint(10, (batch_size,), device=device)

    def step() -> None:
        lam_flat, lam, num_zeros = element_wise_sample_lambda("disc", lambdas, encoding_mat, batch_size=batch_size)
        logits = model(imgs, lam, num_zeros)
        lc = F.cross_entropy(logits, labels, reduction="none")
        with ctx_noparamgrad_and_eval(model):
            imgs_adv = attacker.attack(model, imgs[num_zeros:], labels=labels[num_zeros:], _lambda=lam[num_zeros:],
                                       idx2BN=0)
        logits_adv = model(imgs_adv.detach(), lam[num_zeros:], idx2BN=0)
        la = F.cross_entropy(logits_adv, labels[num_zeros:], reduction="none")
        la = torch.cat([torch.zeros((num_zeros,), device=device), la], dim=0)
        loss = torch.mean((1 - lam_flat) * lc + lam_flat * la)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--variants", default="ours,reference",
                        help=f"comma-separated: reference, {', '.join(VARIANTS)}")
    parser.add_argument("--arch", default="resnet34", help="ours only; the reference is its ResNet-34")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pgd-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--input-shape", default="3,32,32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results") / f"train_step_{platform.node()}.json")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(","))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    args.device = device.type
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n != "reference" and n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from reference, {', '.join(VARIANTS)}")
    if "reference" in names and (args.arch != "resnet34" or shape[0] != 3):
        parser.error("the reference is the paper's ResNet-34 on 3-channel images: drop it or use --arch resnet34")
    started = time.time()
    steps: dict[str, Callable[[], None]] = {}
    for name in names:
        steps[name] = (reference(args.reference_dir, args.batch_size, args.pgd_steps, shape, device)
                       if name == "reference" else ours(name, args, shape))
        t0 = time.perf_counter()
        time_steps(steps[name], 0, args.warmup, device)
        print(f"{name}: built and warmed up in {time.perf_counter() - t0:.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name, step in steps.items():
            times[name] += time_steps(step, args.steps, 0, device)
        print(f"round {r + 1}: " + ", ".join(f"{n} {statistics.median(t):.3f} s" for n, t in times.items()), flush=True)
    medians = {n: statistics.median(t) for n, t in times.items()}
    ref = medians.get("reference")
    report: dict[str, Any] = {
        "command": "python benchmarks/train_step.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "gpu": gpu_name() if device.type == "cuda" else None,
                    "threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "config": {"arch": args.arch, "batch_size": args.batch_size, "pgd_steps": args.pgd_steps,
                   "input_shape": list(shape), "device": device.type},
        "variants": {n: {"what": "the paper's code" if n == "reference" else VARIANTS[n][0],
                         "median_s": medians[n], "over_reference": medians[n] / ref if ref else None,
                         "times_s": times[n]} for n in names},
        "wall_s": round(time.time() - started, 1),
    }
    for n in names:
        print(f"{n:20s} median {medians[n]:.3f} s/step" + (f", ratio to the reference {medians[n] / ref:.3f}"
                                                           if ref else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
