"""Which training recipe makes the λ knob turn: OAT supernets trained with each lever, against dedicated models.

    python benchmarks/study_knob.py --preset cpu                       # every lever, 2 seeds
    python benchmarks/study_knob.py --preset cpu --levers mlp,default   # a subset

Every lever is an OAT run of the `study_oat_vs_dedicated.py` preset (same data, model, epochs, ε = 0.1,
PGD-7 training, PGD-20 evaluation) that differs from the default only in the `TrainConfig` fields it
names. The dedicated models (one per λ) are that study's own runs, shared through the same --runs
folder, so an interrupted study of either kind continues where it stopped. For each lever: SA and RA per
λ (mean ± half the range over seeds), how far they move over λ > 0 as a share of how far the dedicated
models move, and the gap at the two ends (λ = 0 SA, λ = 1 RA) to the dedicated models.
Writes benchmarks/results/knob_levers_<preset>.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from study_oat_vs_dedicated import LAMBDAS, PLAIN_FILM, PRESETS, chosen_levers, dedicated_run, provenance, run_one

from oatdeploy.commands.config_options import DEVICE_HELP
from oatdeploy.runtime.atomic import atomic_write_bytes, atomic_write_json

# Each lever: the TrainConfig fields it sets. `default` is TrainConfig's own recipe (per-λ FiLM tables and a per-λ
# correction of the classifier, trained like every other weight; half of every batch at λ = 0). The others, in the
# order they were the default or were tried: `paper` the paper's FiLM MLP with the reference code's initialisation,
# `mlp` that MLP with an identity start, `table` the per-λ FiLM table (one classifier, the paper's λ = 0 share of
# 1/6), `head` the table with the per-λ classifier at the paper's share; `lr10` the table with ten times the
# learning rate and no weight decay.
PAPER_SHARE: dict[str, Any] = {"clean_share": None}
SHARED_HEAD: dict[str, Any] = {"lambda_head": False}
TABLE: dict[str, Any] = {**SHARED_HEAD, **PAPER_SHARE}
LR10: dict[str, Any] = {"film_lr_scale": 10.0, "film_weight_decay": 0.0}
ENDS: dict[str, Any] = {"lambda_weights": [1, 1, 1, 1, 3], "clean_share": 0.25}
LEVERS: dict[str, dict[str, Any]] = {
    "paper": {"film": "paper", **PLAIN_FILM},
    "mlp": {"film": "mlp", **PLAIN_FILM},
    "lr10": {"film": "linear", **LR10, **TABLE},
    "table": TABLE,
    "head": PAPER_SHARE,
    "default": {},
}
# Screened with one seed on the way (docs/knob.md), or run with two beside the above; run them with --levers.
MORE_LEVERS: dict[str, dict[str, Any]] = {
    "mlp-wd0": {"film": "mlp", "film_weight_decay": 0.0, **TABLE},
    "wd0": {"film_weight_decay": 0.0, **TABLE},
    "lr5": {"film_lr_scale": 5.0, "film_weight_decay": 0.0, **TABLE},
    "lr30": {"film_lr_scale": 30.0, "film_weight_decay": 0.0, **TABLE},
    "ends": {**ENDS, **SHARED_HEAD},
    "lr10-ends": {**LR10, **ENDS, **SHARED_HEAD},
    "lr10-ends6": {**LR10, "lambda_weights": [1, 1, 1, 1, 6], "clean_share": 0.25, **SHARED_HEAD},
    "head-lr3": {"film_lr_scale": 3.0, "film_weight_decay": 0.0, **PAPER_SHARE},
    "shared-head": SHARED_HEAD,  # half the batch at λ = 0, one classifier
    "lam1x3": {"lambda_weights": [1, 1, 1, 1, 3]},  # the default with λ = 1 drawn three times as often
    "head-lr10": LR10,  # the default with the λ conditioning at 10× the learning rate, no weight decay
    "head-lr5": {"film_lr_scale": 5.0, "film_weight_decay": 0.0},
    "epochs6": {"epochs": 6},  # the default for twice the epochs: about one dedicated PGD-AT model's training time
    "sampled": {"objective": "sampled"},  # one loss term per λ > 0 sample (the same expected loss, less work)
    "sampled-e4": {"objective": "sampled", "epochs": 4},  # what the default's training time buys with it
    "sampled-e6": {"objective": "sampled", "epochs": 6},
}
ALL_LEVERS = {**LEVERS, **MORE_LEVERS}


def oat_run(lever: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
    """The default lever is the main study's own OAT run (same name, trained once for both studies)."""
    name = f"oat-s{seed}" if lever == "default" else f"levers/oat-{lever}-s{seed}"
    return {"name": name, "group": lever, "lambdas": LAMBDAS, "widths": [p["width"]],
            "dual_bn": True, "seed": seed, "epochs": p["epochs"], "recipe": ALL_LEVERS[lever]}


def per_lambda(runs: list[dict[str, Any]]) -> dict[float, dict[str, list[float]]]:
    """λ → {'sa': [one per seed], 'ra': [...]} over the runs of one group."""
    out: dict[float, dict[str, list[float]]] = {lam: {"sa": [], "ra": []} for lam in LAMBDAS}
    for r in runs:
        for row in r["results"]:
            out[row["lambda"]]["sa"].append(row["clean_acc"])
            out[row["lambda"]]["ra"].append(row["robust_acc"])
    return out


def spread(table: dict[float, dict[str, list[float]]], key: str) -> float:
    """How far the seed-mean of `key` moves over λ > 0 (max − min)."""
    means = [statistics.mean(table[lam][key]) for lam in LAMBDAS if lam > 0 and table[lam][key]]
    return max(means) - min(means)


def share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else float("nan")


def mean_halfrange(table: dict[float, dict[str, list[float]]]) -> dict[float, dict[str, tuple[float, float]]]:
    """λ → {'sa': (mean, half the range over seeds), 'ra': (...)}."""
    return {lam: {k: (statistics.mean(v), (max(v) - min(v)) / 2) for k, v in table[lam].items()} for lam in LAMBDAS}


def train_seconds(runs: list[dict[str, Any]]) -> float | None:
    """Mean training wall time of the runs (each on one pinned core), where recorded (a resumed run's counts only
    the part after the resume)."""
    times = [r["wall_s"]["train"] for r in runs if r.get("wall_s")]
    return statistics.mean(times) if times else None


def summarize(done: list[dict[str, Any]], levers: list[str]) -> dict[str, Any]:
    dedicated = [r for r in done if r["group"] == "dedicated"]
    ded = per_lambda(dedicated)
    ded_sa, ded_ra = spread(ded, "sa"), spread(ded, "ra")
    rows = []
    for lever in levers:
        runs = [r for r in done if r["group"] == lever]
        t = per_lambda(runs)
        row = {"lever": lever, "recipe": ALL_LEVERS[lever], "seeds": len(t[0.0]["sa"]), "train_s": train_seconds(runs),
               "sa_spread": spread(t, "sa"), "ra_spread": spread(t, "ra"),
               "sa_spread_share": share(spread(t, "sa"), ded_sa), "ra_spread_share": share(spread(t, "ra"), ded_ra),
               "lam0_sa_gap": statistics.mean(t[0.0]["sa"]) - statistics.mean(ded[0.0]["sa"]),
               "lam1_ra_gap": statistics.mean(t[1.0]["ra"]) - statistics.mean(ded[1.0]["ra"]),
               "by_lambda": mean_halfrange(t)}
        rows.append(row)
    ded_s = {lam: train_seconds([r for r in dedicated if r["lambdas"] == [lam]]) for lam in LAMBDAS}
    return {"dedicated": {"sa_spread": ded_sa, "ra_spread": ded_ra, "by_lambda": mean_halfrange(ded), "train_s": ded_s},
            "levers": rows}


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    d = summary["dedicated"]
    lines = [f"# Which recipe turns the λ knob — Fashion-MNIST, preset `{meta['preset']}`", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ", f"Versions: {meta['versions']}  ",
             f"Seeds {meta['seeds']}; PGD-20 at ε = 0.1 on {meta['test_samples']} test images; one accuracy on "
             f"that many images is uncertain by about ±{meta['ci_half']:.1f} points (95 %).", "",
             f"Dedicated models (one per λ) move SA by {100 * d['sa_spread']:.1f} and RA by "
             f"{100 * d['ra_spread']:.1f} points over λ > 0. Training one of them took "
             + ", ".join(f"{v:.0f} s (λ = {lam:g})" for lam, v in d["train_s"].items() if v is not None)
             + " on one pinned core, mean over seeds; the levers' column is the same for one supernet. These are "
             "single runs trained at different times, under whatever else the machine was doing: read them to "
             "within about ±25 % (benchmarks/train_step.py times steps side by side).", "",
             "| lever | changes | SA spread over λ > 0 (share of dedicated) | RA spread (share) | λ = 0 SA − ded. "
             "| λ = 1 RA − ded. | training (s) |", "|---|---|---|---|---|---|---|"]
    for r in summary["levers"]:
        train = "-" if r["train_s"] is None else f"{r['train_s']:.0f}"
        lines.append(f"| {r['lever']} | `{json.dumps(r['recipe'])}` | {100 * r['sa_spread']:.1f} "
                     f"({100 * r['sa_spread_share']:.0f} %) | {100 * r['ra_spread']:.1f} "
                     f"({100 * r['ra_spread_share']:.0f} %) | {100 * r['lam0_sa_gap']:+.1f} "
                     f"| {100 * r['lam1_ra_gap']:+.1f} | {train} |")
    lines += ["", "SA / RA per λ (mean ± half the range over seeds):", "",
              "| λ | " + " | ".join(["dedicated", *[r["lever"] for r in summary["levers"]]]) + " |",
              "|---|" + "---|" * (1 + len(summary["levers"]))]
    for lam in LAMBDAS:
        cells = [d["by_lambda"][lam], *[r["by_lambda"][lam] for r in summary["levers"]]]
        text = [f"{c['sa'][0]:.3f}±{c['sa'][1]:.3f} / {c['ra'][0]:.3f}±{c['ra'][1]:.3f}" for c in cells]
        lines.append(f"| {lam:g} | " + " | ".join(text) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path, preset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 5.2))
    groups = [("dedicated", summary["dedicated"]), *[(r["lever"], r) for r in summary["levers"]]]
    for i, (name, g) in enumerate(groups):
        pts = [(g["by_lambda"][lam]["ra"][0], g["by_lambda"][lam]["sa"][0]) for lam in LAMBDAS if lam > 0]
        style = "^:" if name == "dedicated" else ("o-", "s--", "D-.")[i % 3]
        color = "k" if name == "dedicated" else plt.get_cmap("tab20")(i % 20)  # distinct colours for many levers
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color,
                label=name, ms=4, alpha=0.9 if name in ("dedicated", "default") else 0.6, zorder=3 - (i > 0))
    ax.set_xlabel("robust accuracy (PGD-20, ε = 0.1), λ = 0.1 … 1")
    ax.set_ylabel("clean accuracy")
    ax.set_title(f"λ > 0 variants per recipe: a longer line is a knob that turns ({preset} preset)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--levers", default=",".join(LEVERS),
                        help="comma-separated, from: " + ", ".join(ALL_LEVERS))
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's path)")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    args = parser.parse_args()
    levers = chosen_levers(parser, args.levers, ALL_LEVERS)
    p = PRESETS[args.preset]
    root = args.runs / args.preset
    plan = [oat_run(lever, seed, p) for seed in p["seeds"] for lever in levers]
    plan += [dedicated_run(lam, seed, p) for seed in p["seeds"] for lam in LAMBDAS]
    done = [run_one(run, p, root, args.data_dir, args.device) for run in plan]
    summary = summarize(done, levers)
    n = p["test_limit"] or 10_000
    meta = {"preset": args.preset, **provenance("study_knob.py"), "seeds": p["seeds"],
            "test_samples": n, "ci_half": 100 * 1.96 * (0.75 * 0.25 / n) ** 0.5, "finished": time.strftime("%Y-%m-%d")}
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"knob_levers_{args.preset}"
    atomic_write_json(stem.with_suffix(".json"), {"meta": meta, "summary": summary, "runs": done})
    atomic_write_bytes(stem.with_suffix(".md"), markdown(summary, meta).encode())
    plot(summary, stem.with_suffix(".png"), args.preset)
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
