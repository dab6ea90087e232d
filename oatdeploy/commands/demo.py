"""`oatdeploy demo`: the whole pipeline on the embedded Fashion-MNIST subset, minutes on a laptop CPU."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from oatdeploy.runtime import Deployment

# Sized for a 2-core CPU: an OATS resnet20 with two widths, PGD-3 training, PGD-10 evaluation on all 1,000 test
# images of fmnist-mini (on 500, one accuracy is uncertain by about ±3.7 points: more than the knob moves SA).
DEMO_TRAIN = {"dataset": "fmnist-mini", "arch": "resnet20", "widths": [0.5, 1.0], "epochs": 4, "batch_size": 64,
              "pgd_steps": 3, "lr": 0.05}
DEMO_EVAL = {"pgd_steps": 10, "limit": 1000}


def example_budgets(dep: Deployment) -> list[dict[str, float]]:
    """Two budgets read off this machine's profile: a tight latency that only the fastest variants meet,
    and a high threat level that asks for the most robust variant at any latency here."""
    latencies = [v.latency_ms for v in dep.variants]
    robust = max(v.robust_acc for v in dep.variants)
    return [{"max_latency_ms": 1.1 * min(latencies), "min_robust_acc": 0.5 * robust},
            {"max_latency_ms": 2 * max(latencies), "min_robust_acc": robust}]


def stage(name: str) -> None:
    click.secho(f"\n== {name}", bold=True)


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="demo", show_default=True, help="Output folder.")
@click.option("--epochs", type=click.IntRange(min=1), default=DEMO_TRAIN["epochs"], show_default=True)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Cut training short (smoke runs).")
@click.option("--eval-limit", type=click.IntRange(min=1), default=DEMO_EVAL["limit"], show_default=True,
              help="Test images used for SA/RA.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Replace the run and deployment of an earlier demo in --out.")
def demo(out: str, epochs: int, max_steps: int | None, eval_limit: int, seed: int, force: bool) -> None:
    """Train an OATS supernet on the embedded data, evaluate it, export, profile and select."""
    from oatdeploy.evaluate import format_table, knob_summary, run_evaluation
    from oatdeploy.export.manifest import format_variants
    from oatdeploy.export.pipeline import export_deployment
    from oatdeploy.overwrite import check_deployment_folder, check_run_folder
    from oatdeploy.runtime import Deployment, NoFeasibleVariant
    from oatdeploy.runtime.atomic import atomic_write_json
    from oatdeploy.runtime.errors import OatError
    from oatdeploy.runtime.plots import Outcome, budget_text, plot_deployment
    from oatdeploy.runtime.profile import format_profile
    from oatdeploy.trainer import TrainConfig, train

    t0 = time.perf_counter()
    run, deploy = Path(out) / "run", Path(out) / "deploy"
    check_run_folder(run, force=force, resumable=False)
    check_deployment_folder(deploy, force=force)
    stage(f"train: {DEMO_TRAIN['arch']} supernet, widths {DEMO_TRAIN['widths']}, embedded fmnist-mini")
    ckpt = train(TrainConfig(**{**DEMO_TRAIN, "epochs": epochs, "max_steps": max_steps, "seed": seed,
                                "out": str(run)}))
    stage(f"eval: SA/RA per (λ, width), PGD-{DEMO_EVAL['pgd_steps']} on {eval_limit} test images")
    report = run_evaluation(ckpt, pgd_steps=DEMO_EVAL["pgd_steps"], limit=eval_limit)
    atomic_write_json(run / "eval.json", report)
    click.echo(format_table(report))
    click.echo("\n".join(["what the λ knob does at full width:", *knob_summary(report)]))

    stage("export: fold BN and FiLM into every (λ, width), ONNX, verified under ONNX Runtime")
    manifest = export_deployment(ckpt, deploy, verify_samples=min(eval_limit, 500), adv_steps=DEMO_EVAL["pgd_steps"])
    click.echo(format_variants(manifest))

    stage("profile: latency of every variant on this machine (ONNX Runtime, batch 1)")
    dep = Deployment.load(deploy)
    click.echo(format_profile(dep.profile(batches=(1,))))
    stage("select: the best clean accuracy within a budget")
    budgets = example_budgets(dep)
    outcomes = []
    for n, budget in enumerate(budgets, 1):
        try:
            choice = dep.choose(**budget)
            outcomes.append(Outcome(budget, choice))
            chosen = choice.describe()
        except NoFeasibleVariant as e:
            outcomes.append(Outcome(budget, error=str(e)))
            chosen = f"none: {e}"
        click.echo(f"budget {n} ({budget_text(budget)}): {chosen}")
    try:
        png = plot_deployment(dep.variants, dep.key(), deploy / "tradeoff-ort-fp32.png", outcomes,
                              title="oatdeploy demo: resnet20 on fmnist-mini")
        click.echo(f"plot: {png}")
    except OatError as e:
        click.echo(f"plot skipped: {e}")
    click.echo(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; everything is in {Path(out)}/")
