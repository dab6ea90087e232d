"""`oatdeploy bench latency`: p50/p95 of every variant of a deployment, as a table or JSON. Torch-free."""

from __future__ import annotations

import json

import click

from oatdeploy.commands.options import graph_options


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@graph_options
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--runs", type=click.IntRange(min=5), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def latency(deploy: str, backend: str, precision: str, batch: int, runs: int, as_json: bool) -> None:
    """Time every variant of DEPLOY (also saved in the manifest, like `oatdeploy profile`)."""
    from oatdeploy.commands.profile import format_profile
    from oatdeploy.runtime import Deployment

    dep = Deployment.load(deploy, backend=backend, precision=precision, batch=batch)
    rows = dep.profile(batches=(batch,), min_runs=runs)
    if as_json:
        click.echo(json.dumps({"device_key": dep.key(), "variants": rows}))
    else:
        click.echo(format_profile(rows))
