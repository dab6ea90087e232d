"""`oatdeploy verify`: SA/RA of an fp16/int8 model or engine on the saved examples, fp32 beside it. Torch-free."""

from __future__ import annotations

import click

from oatdeploy.runtime.backends import BACKENDS
from oatdeploy.runtime.manifest import REDUCED


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(REDUCED), required=True)
@click.option("--backend", type=click.Choice(BACKENDS), default="ort", show_default=True,
              help="ort: the model from `oatdeploy quantize`; trt: this device's engine from `build-engines`.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def verify(deploy: str, precision: str, backend: str, quiet: bool) -> None:
    """Measure clean and robust accuracy at PRECISION and record them, so `select` uses them."""
    from oatdeploy.runtime.precision import format_table, verify_precision

    if backend == "trt":
        from oatdeploy.runtime.backends import require_tensorrt

        require_tensorrt()
    rows = verify_precision(deploy, precision, backend=backend, progress=not quiet)
    click.echo(format_table(rows, precision))
    click.echo(f"saved as precision_metrics.{precision} in {deploy}/manifest.json")
