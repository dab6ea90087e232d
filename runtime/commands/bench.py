"""`oatdeploy bench`: deployment latency here (`bench latency`, torch-free), training-step time on the workstation
(`bench train-step`, imported only when asked for)."""

from __future__ import annotations

import json

import click

from oatdeploy.runtime.commands import LazyGroup
from oatdeploy.runtime.commands.options import graph_options


@click.group(cls=LazyGroup, commands={"latency": f"{__name__}:latency",
                                      "train-step": "oatdeploy.commands.bench_train_step:train_step"})
def bench() -> None:
    """Measure deployment latency and training speed on this machine."""


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@graph_options
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--runs", type=click.IntRange(min=5), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def latency(deploy: str, backend: str, precision: str, batch: int, runs: int, as_json: bool) -> None:
    """Time every variant of DEPLOY (also saved in the manifest, like `oatdeploy profile`)."""
    from oatdeploy.runtime import Deployment
    from oatdeploy.runtime.profile import format_profile

    dep = Deployment.load(deploy, backend=backend, precision=precision, batch=batch)
    rows = dep.profile(batches=(batch,), min_runs=runs)
    if as_json:
        click.echo(json.dumps({"device_key": dep.key(), "variants": [r.to_json() for r in rows]}))
    else:
        click.echo(format_profile(rows))
