"""BN statistics per λ: does giving every λ its own adversarial-BN statistics make the demo's knob turn?

    python benchmarks/study_bn_stats.py                 # the demo's default and dedicated λ = 1 models, seeds 0 and 1

Every λ > 0 shares one adversarial BN, whose running statistics training averages over the clean and the
adversarial passes of all λ > 0 (the FiLM of each λ shapes what the next layer's BN sees). Here each λ gets
its own, measured after training with the weights frozen: the statistics of a clean pass and of an
adversarial pass (PGD as in training, on 1,280 training images) of that λ alone, mixed with weight λ on the
adversarial pass (`per-λ`), or the adversarial pass alone (`adversarial`); `trained` keeps training's.
Export folds statistics per λ anyway, so per-λ statistics would cost a deployment nothing. Evaluated like
the demo (full width, PGD-10 on the 1,000 embedded test images). Runs come from study_demo.py's folders
(trained there if missing). Writes benchmarks/results/knob_bn_stats_demo.{json,md}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from study_demo import DEDICATED, LEVERS, markdown, run_one
from study_oat_vs_dedicated import provenance

from oatdeploy import data as datasets
from oatdeploy.attacks import PGDConfig, frozen_eval, pgd_attack
from oatdeploy.checkpoint import load_supernet
from oatdeploy.demo import DEMO_EVAL
from oatdeploy.evaluate import PGDEval, accuracy_fields, correct_mask, knob_summary
from oatdeploy.nn.dual_bn import SwitchableDualBN2d
from oatdeploy.runtime.atomic import atomic_write_bytes, atomic_write_json
from oatdeploy.supernet import Supernet

Stats = list[tuple[torch.Tensor, torch.Tensor]]
CALIBRATION = (20, 64)  # batches × images
MIXES = ("trained", "per-λ", "adversarial")


def adversarial_bns(sn: Supernet, width_idx: int) -> list[torch.nn.BatchNorm2d]:
    """The BN every λ > 0 shares, in each layer, at one width."""
    return [m.bns[width_idx].BN_a for m in sn.model.modules() if isinstance(m, SwitchableDualBN2d)]


def get_stats(bns: list[torch.nn.BatchNorm2d]) -> Stats:
    return [(b.running_mean.clone(), b.running_var.clone()) for b in bns]


def set_stats(bns: list[torch.nn.BatchNorm2d], stats: Stats) -> None:
    for b, (mean, var) in zip(bns, stats, strict=True):
        b.running_mean.copy_(mean)
        b.running_var.copy_(var)


@torch.no_grad()
def pass_stats(sn: Supernet, bns: list[torch.nn.BatchNorm2d], batches: list[torch.Tensor], li: int, wi: int) -> Stats:
    """The BN inputs' statistics over `batches` through λ's adversarial route, each layer normalised by batch
    statistics as in training (a cumulative average: momentum None)."""
    momenta = [b.momentum for b in bns]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
    sn.model.train()
    try:
        for x in batches:
            sn.model(x, sn.encoding[li : li + 1], 0, wi)
    finally:
        sn.model.eval()
        for b, m in zip(bns, momenta, strict=True):
            b.momentum = m
    return get_stats(bns)


def evaluate_mixes(folder: Path, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                   test_y: torch.Tensor) -> dict[str, dict[str, Any]]:
    sn = load_supernet(folder / "supernet.pt")
    wi, eps = sn.width_index(1.0), float(sn.config["eps"])
    bns = adversarial_bns(sn, wi)
    trained = get_stats(bns)
    attack = PGDConfig(eps=eps, steps=int(sn.config["pgd_steps"]), step_size=sn.config.get("step_size"))
    robust = PGDEval(PGDConfig(eps=eps, steps=DEMO_EVAL["pgd_steps"]))
    clean = list(train_x.split(CALIBRATION[1]))
    rows: dict[str, list[dict[str, Any]]] = {mix: [] for mix in MIXES}
    for li, lam in enumerate(sn.lambdas):
        mixes: dict[str, Stats] = {mix: trained for mix in MIXES}
        if not sn.uses_clean_bn(lam):
            gen = torch.Generator().manual_seed(li)
            with frozen_eval(sn.model):
                fn = sn.forward_fn(lam, 1.0)
                adv = [pgd_attack(fn, x, y, attack, generator=gen)
                       for x, y in zip(clean, train_y.split(CALIBRATION[1]), strict=True)]
            on_clean, on_adv = pass_stats(sn, bns, clean, li, wi), pass_stats(sn, bns, adv, li, wi)
            for mix, weight in (("per-λ", lam), ("adversarial", 1.0)):
                mixes[mix] = [((1 - weight) * mc + weight * ma, (1 - weight) * vc + weight * va)
                              for (mc, vc), (ma, va) in zip(on_clean, on_adv, strict=True)]
        for mix, stats in mixes.items():
            set_stats(bns, stats)
            with frozen_eval(sn.model):
                net = sn.subnet(lam, 1.0)
                rows[mix].append({"lambda": lam, "width": 1.0, "n": len(test_x),
                                  **accuracy_fields("clean", correct_mask(net, test_x, test_y, None, 256)),
                                  **accuracy_fields("robust", robust(net, test_x, test_y))})
        set_stats(bns, trained)
    return {mix: {"sa": {r["lambda"]: r["clean_acc"] for r in found},
                  "ra": {r["lambda"]: r["robust_acc"] for r in found},
                  "knob": knob_summary({"results": found}, 1.0)} for mix, found in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/demo"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    train_set = datasets.load_dataset("fmnist-mini", split="train")
    size = CALIBRATION[0] * CALIBRATION[1]
    pick = torch.randperm(len(train_set.x), generator=torch.Generator().manual_seed(0))[:size]
    train_x, train_y = torch.as_tensor(train_set.x)[pick], torch.as_tensor(train_set.y)[pick]
    test_set = datasets.load_dataset("fmnist-mini", split="test", limit=DEMO_EVAL["limit"])
    test_x, test_y = torch.as_tensor(test_set.x), torch.as_tensor(test_set.y)
    done = []
    for name, recipe in (("dedicated-lam1", DEDICATED["dedicated-lam1"]), ("default", LEVERS["default"])):
        for seed in seeds:
            run_one(name, recipe, seed, args.runs)
            for mix, found in evaluate_mixes(args.runs / f"{name}-s{seed}", train_x, train_y, test_x, test_y).items():
                done.append({"name": name, "seed": seed, "mix": mix, **found})
                print(f"{name}-s{seed} {mix}: SA {found['sa']} RA {found['ra']}", flush=True)
    meta = {**provenance("study_bn_stats.py"), "finished": time.strftime("%Y-%m-%d")}
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / "knob_bn_stats_demo"
    atomic_write_json(stem.with_suffix(".json"), {"meta": meta, "runs": done})
    table = markdown(done, meta, title="BN statistics per λ at the demo's budget",
                     setup=f"Statistics from {CALIBRATION[0] * CALIBRATION[1]} training images per λ. ",
                     column=("BN statistics", lambda r: r["mix"]))
    atomic_write_bytes(stem.with_suffix(".md"), table.encode())
    print(table)


if __name__ == "__main__":
    main()
