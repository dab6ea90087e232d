"""The paper's claim on real data: one OAT supernet switched by λ vs a dedicated model per λ.

    sudo apt-get install dataset-fashion-mnist
    python benchmarks/study_oat_vs_dedicated.py --preset cpu      # under an hour on a 2-core CPU
    python benchmarks/study_oat_vs_dedicated.py --preset gpu      # the full protocol
    python benchmarks/study_oat_vs_dedicated.py --preset gpu-quick --concurrent 4   # a few minutes of one GPU

Every run uses the same data, epochs, ε = 0.1, PGD-7 training and PGD-20 evaluation:
  - oat:        the OAT supernet, λ ∈ {0, 0.1, 0.2, 0.3, 0.4, 1}, dual BN;
  - oat-1bn:    the same with one BN for all samples (the paper's ablation);
  - dedicated:  one model per λ, trained with that λ alone. λ = 0 is standard training and λ = 1
                PGD adversarial training; for 0 < λ < 1 every sample carries the loss
                (1 − λ)·CE(clean) + λ·CE(adv) (no λ = 0 share, so only the adversarial BN is used);
  - oats:       an OATS supernet (widths 0.5, 0.75, 1) against dedicated models at two widths.
Runs are folders under --runs (default benchmarks/runs/, git-ignored); a finished run (eval.json) is skipped and an
interrupted one resumes from its checkpoint, so an interrupted study continues where it stopped; two study
processes can share one --runs folder (e.g. one per core): a run being trained by one is not trained by the other.
`--concurrent N` starts N − 1 such processes beside this one, so N runs train at once (on one GPU, whose launch-bound
steps leave room for several). `gpu-quick` is OAT against dedicated models for λ = 0, 0.1 and 1 only: full
Fashion-MNIST, full-width ResNet-20, 2 epochs, PGD-20 on 5,000 test images; `quick-smoke` is its plan on the
embedded data, for `benchmarks/gpu_check.py --smoke`.
Results go to benchmarks/results/oat_vs_dedicated_<preset>.{json,md,png}; `--replot` redraws the PNG from that JSON.
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
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

from oatdeploy.commands.config_options import DEVICE_HELP
from oatdeploy.config import LEGACY, contradictions, user_fields
from oatdeploy.evaluate import run_evaluation
from oatdeploy.runtime.atomic import atomic_save, atomic_write_bytes, atomic_write_json
from oatdeploy.runtime.device import cpu_name, gpu_name
from oatdeploy.trainer import TrainConfig, train

LAMBDAS = [0.0, 0.1, 0.2, 0.3, 0.4, 1.0]
PRESETS: dict[str, dict[str, Any]] = {
    # Sized for a 2-core CPU: half-width ResNet-20 for the λ study, 10k training and 1k test images.
    "cpu": {"arch": "resnet20", "width": 0.5, "train_limit": 10_000, "test_limit": 1000, "epochs": 3,
            "seeds": [0, 1], "oats_widths": [0.5, 0.75, 1.0], "oats_epochs": 2, "oats_lambdas_dedicated": [0.0, 1.0]},
    "gpu": {"arch": "resnet20", "width": 1.0, "train_limit": None, "test_limit": None, "epochs": 20,
            "seeds": [0, 1, 2], "oats_widths": [0.5, 0.75, 1.0], "oats_epochs": 20,
            "oats_lambdas_dedicated": LAMBDAS},
    "smoke": {"arch": "resnet20", "width": 0.5, "train_limit": 256, "test_limit": 64, "epochs": 1, "seeds": [0],
              "oats_widths": [0.5, 1.0], "oats_epochs": 1, "oats_lambdas_dedicated": [0.0, 1.0]},
    # OAT and three dedicated models only (no one-BN ablation, no OATS), for one GPU in a few minutes.
    "gpu-quick": {"arch": "resnet20", "width": 1.0, "train_limit": None, "test_limit": 5000, "epochs": 2,
                  "seeds": [0], "dedicated_lambdas": [0.0, 0.1, 1.0], "ablation": False, "oats": False,
                  "oats_widths": [1.0], "oats_lambdas_dedicated": []},
    "quick-smoke": {"dataset": "fmnist-mini", "arch": "resnet20", "width": 0.5, "train_limit": 32, "batch_size": 16,
                    "test_limit": 8,
                    "eval_pgd_steps": 2, "epochs": 1, "seeds": [0], "dedicated_lambdas": [0.0, 0.1, 1.0],
                    "ablation": False, "oats": False, "oats_widths": [0.5], "oats_lambdas_dedicated": []},
}


# FiLM trained like every other weight (no learning-rate boost, the usual weight decay). A dedicated model has one
# λ, so its FiLM is one more per-channel affine after the BN, and it has one classifier (a per-λ correction of it
# would only be a second copy): trained this way it is the plain network it is. Its batches are all of its one λ
# whatever the λ = 0 share says; the share is recorded as the paper's, as these runs were, and so is its weighted loss.
PLAIN_FILM: dict[str, Any] = {"film_lr_scale": 1.0, "film_weight_decay": None, "lambda_head": False,
                              "clean_share": None, "objective": "weighted"}


def plan(p: dict[str, Any]) -> list[dict[str, Any]]:
    """Every training run of the protocol: name, group, λs, widths, dual BN, seed, epochs (a preset may leave out
    the one-BN ablation, the OATS comparison and some dedicated λs)."""
    runs = []
    for seed in p["seeds"]:
        runs.append({"name": f"oat-s{seed}", "group": "oat", "lambdas": LAMBDAS, "widths": [p["width"]],
                     "dual_bn": True, "seed": seed, "epochs": p["epochs"]})
        if p.get("ablation", True):
            runs.append({"name": f"oat-1bn-s{seed}", "group": "oat-1bn", "lambdas": LAMBDAS, "widths": [p["width"]],
                         "dual_bn": False, "seed": seed, "epochs": p["epochs"]})
        for lam in p.get("dedicated_lambdas", LAMBDAS):
            runs.append(dedicated_run(lam, seed, p))
    if not p.get("oats", True):
        return runs
    seed = p["seeds"][0]
    runs.append({"name": f"oats-s{seed}", "group": "oats", "lambdas": LAMBDAS, "widths": p["oats_widths"],
                 "dual_bn": True, "seed": seed, "epochs": p["oats_epochs"]})
    for w in (min(p["oats_widths"]), max(p["oats_widths"])):
        for lam in p["oats_lambdas_dedicated"]:
            runs.append({"name": f"dedicated-w{w:g}-lam{lam:g}-s{seed}", "group": "dedicated-width",
                         "lambdas": [lam], "widths": [w], "dual_bn": True, "seed": seed, "epochs": p["oats_epochs"],
                         "recipe": PLAIN_FILM})
    return runs


def dedicated_run(lam: float, seed: int, p: dict[str, Any]) -> dict[str, Any]:
    """One model trained with this λ alone (shared by study_knob.py through its name)."""
    return {"name": f"dedicated-lam{lam:g}-s{seed}", "group": "dedicated", "lambdas": [lam], "widths": [p["width"]],
            "dual_bn": True, "seed": seed, "epochs": p["epochs"], "recipe": PLAIN_FILM}


def claim(folder: Path) -> bool:
    """Whether this process should train `folder`: False while another live study process is training it.

    Lets two study processes (one per core, say) share a --runs folder without training a run twice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".training-pid"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(marker.read_text() or 0), 0)
            return False
        except (ProcessLookupError, ValueError):
            marker.unlink(missing_ok=True)  # left by a process that died: take the run over
            return claim(folder)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def provenance(script: str) -> dict[str, str]:
    """This invocation's command, machine and versions, for the header of a results file."""
    return {"command": " ".join([f"python benchmarks/{script}", *sys.argv[1:]]),
            "machine": f"{cpu_name()}, {torch.get_num_threads()} threads" + (f", {gpu_name()}" if gpu_name() else ""),
            "versions": f"python {platform.python_version()}, torch {torch.__version__}"}


def chosen_levers(parser: argparse.ArgumentParser, text: str, known: Collection[str]) -> list[str]:
    """The lever names in a comma-separated --levers, or a usage error naming the unknown ones."""
    levers = [v for v in text.split(",") if v]
    unknown = [v for v in levers if v not in known]
    if unknown:
        parser.error(f"unknown lever(s) {unknown}; choose from {', '.join(known)}")
    return levers


def check_recipe(folder: Path, cfg: TrainConfig) -> None:
    """Refuse to reuse a finished run trained with another recipe (after a default changed, say): every
    field counts except where the data lives and how the process ran (`amp` too: runs from before `amp_cpu`
    existed recorded amp=True for fp32 CPU training) and an ε left to the dataset's default."""
    saved = json.loads((folder / "config.json").read_text())
    given = {f.name for f in user_fields()} - {"amp", "amp_cpu"}
    if cfg.eps is None:
        given.discard("eps")  # the dataset's default, which the run resolved and recorded
    stale = contradictions(saved, cfg, given)
    if stale:
        said = ", ".join(f"{f.name}={saved.get(f.name, LEGACY.get(f.name))!r} (asked {getattr(cfg, f.name)!r})"
                         for f in stale)
        sys.exit(f"{folder} was trained with {said}; move it away (or pass another --runs) to train it again")


def trained_report(folder: Path, cfg: TrainConfig, evaluate: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The run's eval.json: reused if the run was trained as `cfg` says; otherwise trained (an interrupted run
    continues from its last checkpoint, bit-exactly), evaluated by `evaluate(checkpoint)` and written."""
    if (folder / "eval.json").is_file():
        check_recipe(folder, cfg)
    else:
        t0 = time.time()
        ckpt = train(cfg, resume=(folder / "supernet.pt").is_file(), progress=sys.stderr.isatty())
        train_s = time.time() - t0
        report = evaluate(ckpt)
        report["wall_s"] = {"train": round(train_s, 1), "eval": round(time.time() - t0 - train_s, 1)}
        atomic_write_json(folder / "eval.json", report)
    return json.loads((folder / "eval.json").read_text())


def run_one(run: dict[str, Any], p: dict[str, Any], root: Path, data_dir: str | None, device: str = "auto",
            wait: bool = True) -> dict[str, Any] | None:
    """Train and evaluate one run (or reuse its eval.json) on `device`; while another process trains it, wait
    for it, or with `wait=False` return None at once."""
    folder = root / run["name"]
    cfg = TrainConfig(**{"dataset": p.get("dataset", "fashion-mnist"), "data_dir": data_dir, "arch": p["arch"],
                         "lambdas": run["lambdas"], "widths": run["widths"], "dual_bn": run["dual_bn"],
                         "seed": run["seed"], "epochs": run["epochs"], "batch_size": p.get("batch_size", 128),
                         "pgd_steps": 7, "eps": 0.1, "train_limit": p["train_limit"], "out": str(folder),
                         # fp32 everywhere: runs on CPUs with and without native bf16 compute the same thing
                         "amp": False, "device": device,
                         **run.get("recipe", {})})
    while not (folder / "eval.json").is_file() and not claim(folder):
        if not wait:
            return None
        time.sleep(20)  # another process is training this run
    report = trained_report(folder, cfg, lambda ckpt: run_evaluation(ckpt, pgd_steps=p.get("eval_pgd_steps", 20),
                                                                      limit=p["test_limit"],
                                                                      data_dir=data_dir, progress=False,
                                                                      device=device))
    (folder / ".training-pid").unlink(missing_ok=True)
    print(f"{run['name']:<28} done ({report.get('wall_s')})", flush=True)
    return {**run, "results": report["results"], "wall_s": report.get("wall_s")}


def summarize(done: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
    """Per λ: mean SA/RA over seeds of OAT, OAT without dual BN and the dedicated models."""
    def pick(group: str, lam: float, width: float) -> list[tuple[float, float]]:
        out = []
        for r in done:
            if r["group"] != group:
                continue
            for row in r["results"]:
                if abs(row["lambda"] - lam) < 1e-9 and abs(row["width"] - width) < 1e-9:
                    out.append((row["clean_acc"], row["robust_acc"]))
        return out

    def mean(pairs: list[tuple[float, float]], i: int) -> float | None:
        return statistics.mean(v[i] for v in pairs) if pairs else None

    def halfrange(pairs: list[tuple[float, float]], i: int) -> float | None:
        """Half the spread between seeds: how far apart two seeds of the same run landed."""
        return (max(v[i] for v in pairs) - min(v[i] for v in pairs)) / 2 if len(pairs) > 1 else None

    table = []
    for lam in LAMBDAS:
        row: dict[str, Any] = {"lambda": lam}
        for group in ("oat", "oat-1bn", "dedicated"):
            pairs = pick(group, lam, p["width"])
            row[group] = {"sa": mean(pairs, 0), "ra": mean(pairs, 1), "n": len(pairs),
                          "sa_halfrange": halfrange(pairs, 0), "ra_halfrange": halfrange(pairs, 1)}
        table.append(row)
    widths_table = []
    for w in sorted({min(p["oats_widths"]), max(p["oats_widths"])}):
        for lam in p["oats_lambdas_dedicated"]:
            oats, ded = pick("oats", lam, w), pick("dedicated-width", lam, w)
            widths_table.append({"width": w, "lambda": lam, "oats": {"sa": mean(oats, 0), "ra": mean(oats, 1)},
                                 "dedicated": {"sa": mean(ded, 0), "ra": mean(ded, 1)}})
    return {"by_lambda": table, "oats_vs_dedicated": widths_table}


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def fmt_pm(cell: dict[str, Any], key: str) -> str:
    spread = cell.get(f"{key}_halfrange")
    return fmt(cell[key]) + ("" if spread is None else f" ± {spread:.3f}")


def diff(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a - b:+.3f}"


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [f"# OAT vs dedicated models, Fashion-MNIST, preset `{meta['preset']}`", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ", f"Versions: {meta['versions']}  ",
             f"Total wall time: {meta['wall_s'] / 60:.1f} min; SA/RA: mean ± half the range over seeds "
             f"{meta['seeds']}, PGD-20 at ε = 0.1 on {meta['test_samples']} test images.", "",
             "| λ | OAT SA | OAT RA | dedicated SA | dedicated RA | ΔSA (OAT − ded.) | ΔRA (OAT − ded.) "
             "| OAT 1-BN SA | OAT 1-BN RA |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["by_lambda"]:
        o, d, s = r["oat"], r["dedicated"], r["oat-1bn"]
        lines.append(f"| {r['lambda']:g} | {fmt_pm(o, 'sa')} | {fmt_pm(o, 'ra')} | {fmt_pm(d, 'sa')} | "
                     f"{fmt_pm(d, 'ra')} | {diff(o['sa'], d['sa'])} | {diff(o['ra'], d['ra'])} | {fmt_pm(s, 'sa')} | "
                     f"{fmt_pm(s, 'ra')} |")
    if not summary["oats_vs_dedicated"]:
        return "\n".join(lines) + "\n"
    lines += ["", "OATS (one supernet, widths " + ", ".join(f"{w:g}" for w in meta["oats_widths"]) +
              ") vs dedicated models of one width:", "",
              "| width | λ | OATS SA | OATS RA | dedicated SA | dedicated RA |", "|---|---|---|---|---|---|"]
    for r in summary["oats_vs_dedicated"]:
        lines.append(f"| {r['width']:g} | {r['lambda']:g} | {fmt(r['oats']['sa'])} | {fmt(r['oats']['ra'])} | "
                     f"{fmt(r['dedicated']['sa'])} | {fmt(r['dedicated']['ra'])} |")
    return "\n".join(lines) + "\n"


def draw(summary: dict[str, Any], preset: str, seeds: Collection[int] = ()) -> Any:
    """SA vs RA per λ for each group: the mean over seeds with bars of half the range between them. Left every
    λ; right the λ > 0 cluster enlarged (λ = 0 sits near RA 0, far from it). Each point's λ is placed where it
    overlaps no other label, point or bar (runtime.plots.place_labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from oatdeploy.runtime.plots import place_labels

    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(12, 5.6), layout="constrained", width_ratios=[1, 1.5])
    styles = {"oat": ("OAT (dual BN)", "o", "-", "C0"), "oat-1bn": ("OAT, one BN (ablation)", "s", "--", "C1"),
              "dedicated": ("dedicated model per λ", "^", ":", "C2")}
    labels: dict[Any, list[tuple]] = {whole: [], zoom: []}
    for group, (label, marker, line, color) in styles.items():
        rows = [r for r in summary["by_lambda"] if r[group]["sa"] is not None]
        for ax, shown in ((whole, rows), (zoom, [r for r in rows if r["lambda"] > 0])):
            ra, sa = [r[group]["ra"] for r in shown], [r[group]["sa"] for r in shown]
            ra_bar = [r[group].get("ra_halfrange") or 0.0 for r in shown]
            sa_bar = [r[group].get("sa_halfrange") or 0.0 for r in shown]
            ax.errorbar(ra, sa, xerr=ra_bar, yerr=sa_bar, fmt=marker, ls=line, color=color, ms=5, lw=1,
                        elinewidth=1, capsize=2, label=label)
            labels[ax] += [(x, y, f"λ={r['lambda']:g}", color, (x - dx, x + dx) if dx else None,
                            (y - dy, y + dy) if dy else None, 5)
                           for x, y, dx, dy, r in zip(ra, sa, ra_bar, sa_bar, shown, strict=True)
                           if ax is zoom or r["lambda"] == 0]
    seeds_text = f"seeds {', '.join(map(str, seeds))}" if seeds else "seeds"
    for ax in (whole, zoom):
        ax.set_xlabel("robust accuracy (PGD-20, ε = 0.1)")
        ax.set_ylabel("clean accuracy")
        ax.grid(alpha=0.3)
    (x0, x1), (y0, y1) = zoom.get_xlim(), zoom.get_ylim()
    whole.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=0.8, color="0.4"))
    whole.set_title("every λ (dashed: the region enlarged on the right)", fontsize=9)
    zoom.set_title("λ > 0, enlarged", fontsize=9)
    zoom.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Fashion-MNIST: one OAT model vs one model per λ ({preset} preset); mean over {seeds_text}, "
                 "bars: half the range between them", fontsize=10)
    fig.canvas.draw()  # lay out, then place the labels in the final axes
    for ax, points in labels.items():
        place_labels(ax, fig.canvas.get_renderer(), points)
    fig.set_layout_engine("none")
    return fig


def plot(summary: dict[str, Any], path: Path, preset: str, seeds: Collection[int] = ()) -> None:
    import matplotlib.pyplot as plt

    fig = draw(summary, preset, seeds)
    atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's path)")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--replot", action="store_true", help="Only redraw the PNG from the saved results JSON.")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--concurrent", type=int, default=1,
                        help="Runs trained at once: N − 1 more processes of this script share --runs with this one.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --concurrent's processes
    args = parser.parse_args()
    p = PRESETS[args.preset]
    if args.replot:
        stem = args.results / f"oat_vs_dedicated_{args.preset}"
        saved = json.loads(stem.with_suffix(".json").read_text())
        plot(saved["summary"], stem.with_suffix(".png"), args.preset, saved["meta"]["seeds"])
        return
    root = args.runs / args.preset
    started = time.time()
    if args.worker:  # train what no other process has taken, then leave the summary to the first process
        for run in plan(p):
            run_one(run, p, root, args.data_dir, args.device, wait=False)
        return
    workers = [subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--worker"])
               for _ in range(args.concurrent - 1)]
    for run in plan(p):
        run_one(run, p, root, args.data_dir, args.device, wait=False)
    failed = [w.args for w in workers if w.wait() != 0]
    if failed:
        sys.exit(f"{len(failed)} of the --concurrent processes failed (their errors are above); run again to "
                 "continue where they stopped")
    done = [r for r in (run_one(run, p, root, args.data_dir, args.device) for run in plan(p)) if r is not None]
    summary = summarize(done, p)
    meta = {"preset": args.preset, **provenance("study_oat_vs_dedicated.py"),
            "wall_s": sum((r["wall_s"] or {}).get("train", 0) + (r["wall_s"] or {}).get("eval", 0) for r in done),
            "seeds": p["seeds"], "test_samples": p["test_limit"] or 10_000, "oats_widths": p["oats_widths"],
            "this_invocation_s": round(time.time() - started, 1)}
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"oat_vs_dedicated_{args.preset}"
    atomic_write_json(stem.with_suffix(".json"), {"meta": meta, "preset": p, "summary": summary, "runs": done})
    atomic_write_bytes(stem.with_suffix(".md"), markdown(summary, meta).encode())
    plot(summary, stem.with_suffix(".png"), args.preset, p["seeds"])
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
