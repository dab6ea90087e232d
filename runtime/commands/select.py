"""`oatdeploy select`: the variant that meets a latency/robustness budget on this device, and why. Torch-free."""

from __future__ import annotations

import json

import click

from oatdeploy.runtime.commands.options import (
    RENAMED_BATCH,
    RENAMED_JSON,
    Command,
    batch_size_option,
    budget_options,
    format_option,
    graph_options,
)
from oatdeploy.runtime.deployment import POWER_POLICIES
from oatdeploy.runtime.selection import Budget


@click.command(cls=Command, renamed={**RENAMED_JSON, **RENAMED_BATCH})
@click.argument("deploy", type=click.Path(file_okay=False))
@budget_options
@graph_options
@batch_size_option
@click.option("--power-mismatch", type=click.Choice(POWER_POLICIES), default="warn", show_default=True,
              help="On a Jetson, when the profile was taken in another power mode or clock state.")
@format_option
def select(deploy: str, budget: Budget, backend: str, precision: str, batch: int, power_mismatch: str,
           fmt: str) -> None:
    """Pick the best variant of DEPLOY within the budget (exit 2 when none fits).

    The highest SA (or RA) within the budget wins. Unless --strict, a faster variant replaces it only when
    latency binds and an exact paired test on the shared test images cannot tell the two apart (p >= 0.05).
    A deployment without per-image outcomes falls back to comparing 95 % intervals, and says so.
    """
    from oatdeploy.runtime import Deployment

    dep = Deployment.load(deploy, backend=backend, precision=precision, batch=batch, power_policy=power_mismatch)
    choice = dep.choose(budget)
    if fmt == "json":
        click.echo(json.dumps({**choice.variant.to_json(), "device_key": dep.key(), "strict": budget.strict,
                               "tied_on_accuracy": [v.id for v in choice.accuracy_tied],
                               "tied_on_latency": [v.id for v in choice.latency_tied],
                               "paired_p": dict(choice.paired_p), "why": choice.reasons()}))
    else:
        click.echo(f"{choice.variant.describe()}  [{dep.key()}]")
        click.echo("\n".join(f"  {line}" for line in choice.reasons()))
