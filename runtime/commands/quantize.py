"""`oatdeploy quantize`: int8 (Q/DQ, calibrated on calib.npz) or fp16 ONNX models for ONNX Runtime. Torch-free."""

from __future__ import annotations

import click

from oatdeploy.runtime.commands.options import calibration_options, quiet_option
from oatdeploy.runtime.manifest import REDUCED


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(REDUCED), default="int8", show_default=True,
              help="int8: Q/DQ graphs calibrated on the training images; fp16: half-precision graphs.")
@calibration_options
@quiet_option
def quantize(deploy: str, precision: str, calib_size: int, calib_data: str | None, quiet: bool) -> None:
    """Quantize every graph of DEPLOY (int8 Q/DQ or fp16) into DEPLOY/quantized/ and record them in the manifest."""
    from oatdeploy.runtime.quantize import quantize_deployment

    rows = quantize_deployment(deploy, precision=precision, calib_size=calib_size, calib_data=calib_data,
                    progress=not quiet)
    for graph, served in rows:
        click.echo(f"{graph.onnx}  serves {', '.join(served)}")
    click.echo(f"next: `oatdeploy verify {deploy} --precision {precision}` measures its SA/RA")
