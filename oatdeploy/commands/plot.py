"""`oatdeploy plot`: the deployment's SA/RA trade-off and SA vs latency, with their noise and the budget, as a PNG.
Torch-free."""

from __future__ import annotations

from pathlib import Path

import click

from oatdeploy.commands.options import budget_options, graph_options


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="PNG to write  [default: DEPLOY/tradeoff-<backend>-<precision>.png]")
@budget_options
@click.option("--strict", is_flag=True, help="Select on point estimates, as `select --strict`.")
@graph_options
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
def plot(deploy: str, out: str | None, max_latency_ms: float | None, min_robust_acc: float | None,
         min_clean_acc: float | None, objective: str, strict: bool, backend: str, precision: str, batch: int) -> None:
    """Draw DEPLOY's SA-vs-RA per width and SA vs latency on this device, with 95 % intervals, the latency
    spread, each plane's Pareto front, and the budget in words: what it selects, or why nothing meets it
    (then exit 2, as select does)."""
    from oatdeploy.plots import Outcome, plot_deployment
    from oatdeploy.runtime import Deployment, NoFeasibleVariant

    dep = Deployment.load(deploy, backend=backend, precision=precision, batch=batch)
    budget = {"max_latency_ms": max_latency_ms, "min_robust_acc": min_robust_acc, "min_clean_acc": min_clean_acc}
    outcomes, infeasible = [], None
    if any(v is not None for v in budget.values()):
        try:
            outcomes.append(Outcome(budget, dep.choose(**budget, objective=objective, strict=strict)))
        except NoFeasibleVariant as e:
            infeasible = e
            outcomes.append(Outcome(budget, error=str(e)))
    path = Path(out) if out else Path(deploy) / f"tradeoff-{backend}-{precision}.png"
    model = dep.manifest["model"]
    title = f"{model.get('arch', '')} on {model.get('dataset', '')}, {precision}, batch {batch}"
    plot_deployment(dep.variants, dep.key(), path, outcomes, title=title)
    click.echo(f"wrote {path}")
    if infeasible is not None:
        raise NoFeasibleVariant(f"{infeasible} (the plot shows it: {path})")
    if outcomes:
        click.echo(f"selected: {outcomes[0].choice.variant.describe()}")
