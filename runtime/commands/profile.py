"""`oatdeploy profile`: latency of every variant on this device, with its noise, saved in the manifest. Torch-free."""

from __future__ import annotations

import json

import click

from oatdeploy.runtime.commands.options import RENAMED_BATCH, Command, format_option, graph_options, quiet_option
from oatdeploy.runtime.profile import format_profile


@click.command(cls=Command, renamed=RENAMED_BATCH)
@click.argument("deploy", type=click.Path(file_okay=False))
@graph_options
@click.option("--batch-size", "batches", type=click.IntRange(min=1), multiple=True, default=(1,), show_default=True,
              help="Images per inference call; repeat for several.")
@click.option("--runs", type=click.IntRange(min=5), default=50, show_default=True,
              help="At least this many timed runs per variant, over all rounds.")
@click.option("--rounds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Rounds over all variants in turn; the spread of their medians is the noise.")
@quiet_option
@format_option
def profile(deploy: str, backend: str, precision: str, batches: tuple[int, ...], runs: int, rounds: int,
            quiet: bool, fmt: str) -> None:
    """Measure p50/p95 latency of every variant in DEPLOY here and store it under this device's key.

    The variants are timed round-robin over several rounds, not one after another, so drift in clocks or
    load lands on all of them; the spread between rounds is stored and shown, and `select` counts latencies
    within it as tied.
    """
    from oatdeploy.runtime import Deployment

    dep = Deployment.load(deploy, backend=backend, precision=precision)
    rows = dep.profile(batches=batches, progress=not quiet, min_runs=runs, rounds=rounds)
    if fmt == "json":
        click.echo(json.dumps({"device_keys": [dep.key(backend, precision, b) for b in batches],
                               "variants": [r.to_json() for r in rows]}))
        return
    click.echo(format_profile(rows))
    keys = ", ".join(f"'{dep.key(backend, precision, b)}'" for b in batches)
    click.echo(f"saved under {keys} in {deploy}/manifest.json")
