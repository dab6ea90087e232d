"""`oatdeploy verify`: SA/RA of an fp16/int8 model or engine on the saved examples, fp32 beside it. Torch-free."""

from __future__ import annotations

import json

import click

from oatdeploy.runtime.backends import BACKENDS
from oatdeploy.runtime.commands.options import format_option, quiet_option
from oatdeploy.runtime.manifest import REDUCED


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(REDUCED), required=True, help="The reduced precision to measure.")
@click.option("--backend", type=click.Choice(BACKENDS), default="ort", show_default=True,
              help="ort: the model from `oatdeploy quantize`; trt: this device's engine from `build-engines`.")
@quiet_option
@format_option
def verify(deploy: str, precision: str, backend: str, quiet: bool, fmt: str) -> None:
    """Measure clean and robust accuracy at PRECISION and record them, so `select` uses them."""
    from oatdeploy.runtime.precision import format_table, verify_precision

    if backend == "trt":
        from oatdeploy.runtime.backends import require_tensorrt

        require_tensorrt()
    rows = verify_precision(deploy, precision, backend=backend, progress=not quiet)
    if fmt == "json":
        click.echo(json.dumps({"precision": precision, "backend": backend,
                               "variants": {vid: m.to_json() for vid, m in rows}}))
        return
    click.echo(format_table(rows, precision))
    click.echo(f"saved as precision_metrics.{precision} in {deploy}/manifest.json")
