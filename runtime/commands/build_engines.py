"""`oatdeploy build-engines`: TensorRT engines for every graph of a deployment, on this GPU. Torch-free."""

from __future__ import annotations

import click

from oatdeploy.runtime.commands.options import calibration_options, int_list
from oatdeploy.runtime.manifest import PRECISIONS


@click.command("build-engines")
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)
@click.option("--batch", "batch_profile", default="1,1,32", show_default=True, callback=int_list,
              help="Batch sizes the engines accept: min,opt,max (opt is the one tuned for).")
@click.option("--workspace-mb", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Most scratch GPU memory a layer may use while building and running.")
@calibration_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build_engines(deploy: str, precision: str, batch_profile: list[int], workspace_mb: int, calib_size: int,
                  calib_data: str | None, quiet: bool) -> None:
    """Build one TensorRT engine per ONNX graph in DEPLOY and record it in the manifest.

    int8 on TensorRT >= 10 compiles the Q/DQ graphs of `oatdeploy quantize DEPLOY --precision int8`;
    before 10 it calibrates on DEPLOY/calib.npz (or --calib-data)."""
    from oatdeploy.runtime.engines import build_engines as build

    engines = build(deploy, precision=precision, batch_profile=batch_profile, workspace_mb=workspace_mb,
                    calib_size=calib_size, calib_data=calib_data, progress=not quiet)
    for e in engines:
        batch = f"{e.batch_profile.min}..{e.batch_profile.max}" if e.batch_profile else "?"
        click.echo(f"{e.path}  ({e.precision} via {e.method} from {e.onnx}, batch {batch}, TensorRT {e.trt_version}, "
                   f"{e.device} sm{e.compute_capability})")
    click.echo(f"recorded {len(engines)} engine(s) in {deploy}/manifest.json")
