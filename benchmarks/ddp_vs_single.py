"""Does a two-process (DDP, gloo) run train the same model as a one-process run with the same global batch?

    python benchmarks/ddp_vs_single.py [--seeds 0,1,2 --epochs 2]

For each seed: the same OATS configuration trained by one process and by two (torchrun, gloo, the
global batch split in halves), then PGD-evaluated on the same test images. The two runs of a seed
see the same samples in each global step but draw different λs, PGD starts and augmentations (each
rank has its own streams), so they differ the way two seeds do: the spread across seeds is the noise
to compare the one-vs-two-process gap with. Runs go to benchmarks/runs/ddp_vs_single/ (git-ignored;
an interrupted study continues where it stopped); the table to benchmarks/results/ddp_vs_single_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from oatdeploy.evaluate import run_evaluation
from oatdeploy.runtime.atomic import atomic_write_bytes, atomic_write_json
from oatdeploy.runtime.device import cpu_name

TRAIN = ["--dataset", "fmnist-mini", "--arch", "resnet20", "--widths", "0.5,1", "--batch-size", "64",
         "--pgd-steps", "2", "--lr", "0.05"]


def train(run: Path, processes: int, seed: int, epochs: int) -> None:
    """Train one run; a run stopped half-way (Ctrl-C) continues with --resume."""
    cli = ["-m", "oatdeploy.cli", "train", *TRAIN, "--epochs", str(epochs), "--seed", str(seed), "--out", str(run)]
    if (run / "supernet.pt").is_file():
        cli.append("--resume")
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    if processes == 1:
        launch = []
    subprocess.run([sys.executable, *launch, *cli], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def final_loss(run: Path) -> float:
    """Mean of the last five logged training losses (rank 0's share of the batch under DDP)."""
    losses = [float(line.split(" loss ")[1].split()[0]) for line in (run / "train.log").read_text().splitlines()
              if " loss " in line]
    return statistics.mean(losses[-5:])


def summary(report: dict[str, Any], run: Path) -> dict[str, float]:
    rows = report["results"]
    at = {(r["lambda"], r["width"]): r for r in rows}
    return {"final_train_loss": final_loss(run),
            "mean_clean_acc": statistics.mean(r["clean_acc"] for r in rows),
            "mean_robust_acc": statistics.mean(r["robust_acc"] for r in rows),
            "clean_acc_lam0_w1": at[(0.0, 1.0)]["clean_acc"], "robust_acc_lam1_w1": at[(1.0, 1.0)]["robust_acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-limit", type=int, default=500)
    parser.add_argument("--eval-pgd-steps", type=int, default=10)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/ddp_vs_single"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ddp_vs_single_cpu"))
    args = parser.parse_args()
    started = time.time()
    results: dict[str, dict[str, dict[str, float]]] = {"1 process": {}, "2 processes": {}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for label, processes in (("1 process", 1), ("2 processes", 2)):
            run = args.runs / f"p{processes}-s{seed}-e{args.epochs}"
            if not (run / "eval.json").is_file():
                train(run, processes, seed, args.epochs)
                atomic_write_json(run / "eval.json", run_evaluation(
                    run / "supernet.pt", pgd_steps=args.eval_pgd_steps, limit=args.eval_limit, progress=False))
            report = json.loads((run / "eval.json").read_text())
            results[label][f"seed {seed}"] = summary(report, run)
            print(label, f"seed {seed}", results[label][f"seed {seed}"], flush=True)
    metrics = list(next(iter(results["1 process"].values())))
    table = ["| metric | 1 process (per seed) | 2 processes (per seed) | mean 1p | mean 2p | 1p spread (max−min) |",
             "|---|---|---|---|---|---|"]
    for m in metrics:
        one = [v[m] for v in results["1 process"].values()]
        two = [v[m] for v in results["2 processes"].values()]
        table.append(f"| {m} | {', '.join(f'{v:.3f}' for v in one)} | {', '.join(f'{v:.3f}' for v in two)} | "
                     f"{statistics.mean(one):.3f} | {statistics.mean(two):.3f} | {max(one) - min(one):.3f} |")
    command = "python benchmarks/ddp_vs_single.py " + " ".join(sys.argv[1:])
    report = {"command": command, "train_options": [*TRAIN, "--epochs", str(args.epochs)],
              "eval": {"pgd_steps": args.eval_pgd_steps, "limit": args.eval_limit},
              "machine": {"cpu": cpu_name(), "threads_per_process": 1}, "torch": torch.__version__,
              "python": platform.python_version(), "results": results, "wall_s": round(time.time() - started, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), report)
    atomic_write_bytes(args.out.with_suffix(".md"), (f"`{command}` ({report['wall_s'] / 60:.0f} min, CPU, gloo)\n\n"
                                           + "\n".join(table) + "\n").encode())
    print("\n".join(table))


if __name__ == "__main__":
    main()
