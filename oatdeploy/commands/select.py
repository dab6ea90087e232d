"""`oatdeploy select`: the variant that meets a latency/robustness budget on this device, and why. Torch-free."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from oatdeploy.commands.options import budget_options, graph_options


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@budget_options
@click.option("--strict", is_flag=True,
              help="Compare point estimates: no ties for accuracies whose 95 % intervals overlap or latencies "
                   "within their profiling spread (docs/selection.md).")
@graph_options
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--power-mismatch", type=click.Choice(["warn", "refuse"]), default="warn", show_default=True,
              help="On a Jetson, when the profile was taken in another power mode or clock state.")
@click.option("--json", "as_json", is_flag=True, help="Print the chosen variant and why as JSON.")
def select(deploy: str, max_latency_ms: float | None, min_robust_acc: float | None,
           min_clean_acc: float | None, objective: str, strict: bool, backend: str, precision: str, batch: int,
           power_mismatch: str, as_json: bool) -> None:
    """Pick the best variant of DEPLOY within the budget (exit 2 when none fits).

    Unless --strict, accuracies whose 95 % intervals overlap the best one's count as tied, and so do
    latencies within the spread between profiling rounds; the faster, then the more robust, wins.
    """
    from oatdeploy.runtime import Deployment

    dep = Deployment.load(deploy, backend=backend, precision=precision, batch=batch, power_policy=power_mismatch)
    choice = dep.choose(max_latency_ms=max_latency_ms, min_robust_acc=min_robust_acc, min_clean_acc=min_clean_acc,
                        objective=objective, strict=strict)
    if as_json:
        click.echo(json.dumps({**asdict(choice.variant), "device_key": dep.key(), "strict": strict,
                               "tied_on_accuracy": [v.id for v in choice.accuracy_tied],
                               "tied_on_latency": [v.id for v in choice.latency_tied], "why": choice.reasons()}))
    else:
        click.echo(f"{choice.variant.describe()}  [{dep.key()}]")
        click.echo("\n".join(f"  {line}" for line in choice.reasons()))
