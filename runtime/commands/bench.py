"""`oatdeploy bench`: deployment latency here (`bench latency`, torch-free), training-step time on the workstation
(`bench train-step`, imported only when asked for)."""

from __future__ import annotations

import json

import click

from oatdeploy.runtime.commands import LazyGroup
from oatdeploy.runtime.commands.options import (
    RENAMED_BATCH,
    RENAMED_JSON,
    Command,
    batch_size_option,
    format_option,
    graph_options,
    quiet_option,
)


@click.group(cls=LazyGroup, commands={"latency": f"{__name__}:latency",
                                      "train-step": "oatdeploy.commands.bench_train_step:train_step"})
def bench() -> None:
    """Measure deployment latency and training speed on this machine."""


@click.command(cls=Command, renamed={**RENAMED_JSON, **RENAMED_BATCH})
@click.argument("deploy", type=click.Path(file_okay=False))
@graph_options
@batch_size_option
@click.option("--runs", type=click.IntRange(min=5), default=50, show_default=True,
              help="At least this many timed runs per variant.")
@quiet_option
@format_option
def latency(deploy: str, backend: str, precision: str, batch: int, runs: int, quiet: bool, fmt: str) -> None:
    """Time every variant of DEPLOY (also saved in the manifest, like `oatdeploy profile`)."""
    from oatdeploy.runtime import Deployment
    from oatdeploy.runtime.profile import format_profile

    dep = Deployment.load(deploy, backend=backend, precision=precision, batch=batch)
    rows = dep.profile(batches=(batch,), min_runs=runs, progress=not quiet)
    if fmt == "json":
        click.echo(json.dumps({"device_key": dep.key(), "variants": [r.to_json() for r in rows]}))
    else:
        click.echo(format_profile(rows))
