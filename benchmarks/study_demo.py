"""The λ knob at the demo's budget: `oatdeploy demo`'s training recipe with each lever, against dedicated models.

    python benchmarks/study_demo.py                                   # table, head, default; seeds 0 and 1
    python benchmarks/study_demo.py --levers table,head,default,ends,head-lr3,head-lr6,lam1x3

Every lever trains the demo's OATS supernet (ResNet-20, widths 0.5 and 1, 4 epochs of the 5,000 embedded
Fashion-MNIST images, batch 64, PGD-3) differing from the default only in the TrainConfig fields it names,
and is evaluated like the demo (PGD-10 on all 1,000 embedded test images) at full width. The dedicated
models are the same recipe with one λ (0: standard training, 1: PGD adversarial training) and one width (1).
Reports, per lever and seed, SA/RA per λ and what the demo prints: SA from λ = 0 to 1 and RA from λ = 0.1
to 1 in points with paired 95 % intervals. Runs are folders under --runs (benchmarks/runs/demo/); a finished
one is reused if it was trained with the recipe asked for. Writes benchmarks/results/knob_demo.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from study_knob import LR10, PAPER_SHARE, SHARED_HEAD
from study_oat_vs_dedicated import chosen_levers, provenance, trained_report

from oatdeploy.commands.config_options import DEVICE_HELP
from oatdeploy.demo import DEMO_EVAL, DEMO_TRAIN
from oatdeploy.evaluate import knob_summary, run_evaluation
from oatdeploy.runtime.atomic import atomic_write_bytes, atomic_write_json
from oatdeploy.trainer import TrainConfig

LEVERS: dict[str, dict[str, Any]] = {
    "table": {**SHARED_HEAD, **PAPER_SHARE},  # per-λ FiLM tables, one classifier, the paper's λ = 0 share (1/6)
    "head": PAPER_SHARE,  # and a per-λ correction of the classifier
    "default": {},  # and half of every batch at λ = 0
    "ends": {"clean_share": 0.25, "lambda_weights": [1, 1, 1, 1, 3]},
    "head-lr3": {"film_lr_scale": 3.0, "film_weight_decay": 0.0, **PAPER_SHARE},
    "head-lr6": {"film_lr_scale": 6.0, **PAPER_SHARE},
    "lam1x3": {"lambda_weights": [1, 1, 1, 1, 3]},  # the default with λ = 1 drawn three times as often
    "shared-head": SHARED_HEAD,
    "epochs6": {"epochs": 6},  # the default trained 1.5 times as long
    "lambda-linear": {"enc_kind": "none", "enc_dim": 1},  # FiLM and the per-λ classifier linear in λ itself
    "head-lr5": {"film_lr_scale": 5.0, "film_weight_decay": 0.0},  # the λ conditioning at 5× the learning rate
    "head-lr10": LR10,
    "head-lr10-lam1x3": {**LR10, "lambda_weights": [1, 1, 1, 1, 3]},
    "epochs6-lam1x3": {"epochs": 6, "lambda_weights": [1, 1, 1, 1, 3]},
    "sampled": {"objective": "sampled"},  # one loss term per λ > 0 sample (the same expected loss, less work)
    "sampled-e5": {"objective": "sampled", "epochs": 5},  # what the default's training time buys with it
}
DEDICATED: dict[str, dict[str, Any]] = {
    "dedicated-lam0": {"lambdas": [0.0], "widths": [1.0], **SHARED_HEAD, **PAPER_SHARE},
    "dedicated-lam1": {"lambdas": [1.0], "widths": [1.0], **SHARED_HEAD, **PAPER_SHARE},
}


def run_one(name: str, recipe: dict[str, Any], seed: int, root: Path, device: str = "auto") -> dict[str, Any]:
    folder = root / f"{name}-s{seed}"
    cfg = TrainConfig(**{**DEMO_TRAIN, "seed": seed, "out": str(folder), "device": device, **recipe})
    report = trained_report(folder, cfg, lambda ckpt: run_evaluation(
        ckpt, pgd_steps=DEMO_EVAL["pgd_steps"], limit=DEMO_EVAL["limit"], progress=False, widths=[1.0],
        device=device))
    rows = [r for r in report["results"] if r["width"] == 1.0]
    print(f"{folder.name:<22} done ({report.get('wall_s')})", flush=True)
    return {"name": name, "seed": seed, "recipe": recipe, "wall_s": report.get("wall_s"),
            "sa": {r["lambda"]: r["clean_acc"] for r in rows}, "ra": {r["lambda"]: r["robust_acc"] for r in rows},
            "knob": knob_summary(report, 1.0)}


def markdown(done: list[dict[str, Any]], meta: dict[str, Any], title: str = "The λ knob at the demo's budget",
             setup: str = "", column: tuple[str, Callable[[dict[str, Any]], str]] = (
                 "changes", lambda r: f"`{json.dumps(r['recipe'])}`")) -> str:
    """The table of runs: SA/RA per λ and the demo's knob lines; `column` names and fills the third column."""
    lines = [f"# {title} (full width)", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ", f"Versions: {meta['versions']}  ",
             f"{setup}PGD-{DEMO_EVAL['pgd_steps']} at ε = 0.1 on {DEMO_EVAL['limit']} test images (one accuracy is "
             "uncertain by about ±2.6 points there, 95 %; the moves below are paired on the same images).", "",
             f"| run | seed | {column[0]} | SA at λ = 0, 0.1, 0.2, 0.3, 0.4, 1 | RA at the same λs "
             "| what the knob does |",
             "|---|---|---|---|---|---|"]
    for r in done:
        lams = sorted(r["sa"], key=float)
        sa, ra = (" ".join(f"{r[key][k]:.3f}" for k in lams) for key in ("sa", "ra"))
        knob = "; ".join(line.split(": ", 1)[1] for line in r["knob"]) or "-"
        lines.append(f"| {r['name']} | {r['seed']} | {column[1](r)} | {sa} | {ra} | {knob} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levers", default="table,head,default", help="comma-separated, from: " + ", ".join(LEVERS))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/demo"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    args = parser.parse_args()
    levers = chosen_levers(parser, args.levers, LEVERS)
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = [(name, recipe) for name, recipe in DEDICATED.items()] + [(v, LEVERS[v]) for v in levers]
    done = [run_one(name, recipe, seed, args.runs, args.device) for name, recipe in plan for seed in seeds]
    meta = {**provenance("study_demo.py"), "finished": time.strftime("%Y-%m-%d")}
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / "knob_demo"
    atomic_write_json(stem.with_suffix(".json"), {"meta": meta, "runs": done})
    atomic_write_bytes(stem.with_suffix(".md"), markdown(done, meta).encode())
    print(markdown(done, meta))


if __name__ == "__main__":
    main()
