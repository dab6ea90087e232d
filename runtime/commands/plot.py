"""`oatdeploy plot`: the deployment's SA/RA trade-off and SA vs latency, with their noise and the budget, as a PNG.
Torch-free."""

from __future__ import annotations

from pathlib import Path

import click

from oatdeploy.runtime.commands.options import RENAMED_BATCH, Command, batch_size_option, budget_options, graph_options
from oatdeploy.runtime.selection import Budget


@click.command(cls=Command, renamed=RENAMED_BATCH)
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="PNG to write  [default: DEPLOY/tradeoff-<backend>-<precision>.png]")
@budget_options
@graph_options
@batch_size_option
def plot(deploy: str, out: str | None, budget: Budget, backend: str, precision: str, batch: int) -> None:
    """Draw DEPLOY's SA-vs-RA per width and SA vs latency on this device, with 95 % intervals, the latency
    spread, each plane's Pareto front, and the budget in words: what it selects, or why nothing meets it
    (then exit 2, as select does)."""
    from oatdeploy.runtime import Deployment, NoFeasibleVariant
    from oatdeploy.runtime.plots import Outcome, plot_deployment, threat_text

    dep = Deployment.load(deploy, backend=backend, precision=precision, batch=batch)
    outcomes, infeasible = [], None
    if budget.constrained:
        try:
            outcomes.append(Outcome(budget, dep.choose(budget)))
        except NoFeasibleVariant as e:
            infeasible = e
            outcomes.append(Outcome(budget, error=str(e)))
    path = Path(out) if out else Path(deploy) / f"tradeoff-{backend}-{precision}.png"
    model = dep.manifest.model
    title = f"{model.arch or ''} on {model.dataset or ''}, {precision}, batch {batch}"
    plot_deployment(dep.variants, dep.key(), path, outcomes, title=title, attack=threat_text(dep.manifest))
    click.echo(f"wrote {path}")
    if infeasible is not None:
        raise NoFeasibleVariant(f"{infeasible} (the plot shows it: {path})")
    if outcomes:
        click.echo(f"selected: {outcomes[0].choice.variant.describe()}")
