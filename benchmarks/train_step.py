"""Training-step time, ours vs the paper's reference code, side by side in one process.

    git -C <mirror of VITA-Group/Once-for-All-Adversarial-Training> archive HEAD | tar -x -C /tmp/oat_ref
    python benchmarks/train_step.py --reference-dir /tmp/oat_ref [--arch resnet34 --batch-size 16 --pgd-steps 3]

Both steps do the same work: element-wise λ sampling (⌈N/6⌉ clean samples first), PGD with random start
on the λ > 0 samples with the model in eval mode, the clean and adversarial forward passes through dual
BN and FiLM, the weighted loss, backward and an SGD update, on random 3×32×32 data. The reference step
is the body of its OAT.py (`--efficient`) loop calling its own model, sampler and PGD. Its code calls
`.cuda()` unconditionally; on a machine without a GPU this script maps `.cuda()` to a no-op for the
reference so that its step runs unchanged on the CPU. Rounds alternate ours/reference so that drift in
machine load hits both alike; the report gives medians and the ratio ours/reference.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from oatdeploy.atomic import atomic_write_json
from oatdeploy.bench import time_steps, train_step_seconds
from oatdeploy.runtime.device import cpu_name, gpu_name


def reference_step_seconds(ref_dir: Path, batch_size: int, pgd_steps: int, steps: int, warmup: int,
                           input_shape: tuple[int, int, int], device: torch.device) -> list[float]:
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

    return time_steps(step, steps, warmup, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pgd-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--input-shape", default="3,32,32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results") / f"train_step_{platform.node()}.json")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(","))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    ours: list[float] = []
    ref: list[float] = []
    started = time.time()
    for r in range(args.rounds):
        ours += train_step_seconds("resnet34", args.batch_size, args.pgd_steps, args.steps, shape, (1.0,),
                                   args.warmup, device.type)
        ref += reference_step_seconds(args.reference_dir, args.batch_size, args.pgd_steps, args.steps, args.warmup,
                                      shape, device)
        print(f"round {r + 1}: ours {statistics.median(ours):.3f} s/step, "
              f"reference {statistics.median(ref):.3f} s/step")
    report = {
        "command": "python benchmarks/train_step.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "gpu": gpu_name() if device.type == "cuda" else None,
                    "threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "config": {"arch": "resnet34", "batch_size": args.batch_size, "pgd_steps": args.pgd_steps,
                   "input_shape": list(shape), "device": device.type, "amp_bf16": device.type == "cuda"},
        "ours_median_s": statistics.median(ours), "reference_median_s": statistics.median(ref),
        "ours_over_reference": statistics.median(ours) / statistics.median(ref),
        "ours_s": ours, "reference_s": ref, "wall_s": round(time.time() - started, 1),
    }
    print(f"ours {report['ours_median_s']:.3f} s/step, reference {report['reference_median_s']:.3f} s/step, "
          f"ratio ours/reference {report['ours_over_reference']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
