"""`oatdeploy build-engines`: TensorRT engines for every graph of a deployment, on this GPU. Torch-free."""

from __future__ import annotations

from typing import Sequence

import click

from oatdeploy.runtime.commands.options import calibration_options, int_list, quiet_option, warn_renamed
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.manifest import PRECISIONS

DEFAULT_BATCHES = (1, 1, 32)  # min, opt, max batch of the engines' optimization profile


def profile_batches(shapes: Sequence[list[int] | None], sample: Sequence[int]) -> list[int]:
    """The batch sizes of --min-shape, --opt-shape and --max-shape (NxCxHxW), whose CxHxW must be the model's."""
    out = []
    for name, shape, default in zip(("--min-shape", "--opt-shape", "--max-shape"), shapes, DEFAULT_BATCHES):
        if shape is not None and list(shape[1:]) != list(sample):
            model = "x".join(map(str, sample))
            raise OatError(f"{name} {'x'.join(map(str, shape))} does not match the deployment's input {model}; "
                           f"write it as Nx{model} (N: the batch size)")
        out.append(default if shape is None else shape[0])
    return out


def shape_option(name: str, batch: int, what: str) -> click.Option:
    return click.option(name, default=None, callback=int_list, metavar="NxCxHxW",
                        help=f"{what}, as trtexec writes shapes (1x3x32x32, or 1,3,32,32); C, H, W are the "
                             f"model's  [default: {batch}xCxHxW]")


@click.command("build-engines")
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp32, fp16, or int8 (Q/DQ graphs from `oatdeploy quantize`, or calibration before TensorRT 10).")
@shape_option("--min-shape", DEFAULT_BATCHES[0], "The smallest input the engines take")
@shape_option("--opt-shape", DEFAULT_BATCHES[1], "The input the engines are tuned for")
@shape_option("--max-shape", DEFAULT_BATCHES[2], "The largest input the engines take")
@click.option("--batch", "batch_profile", default=None, callback=int_list, hidden=True,
              help="Deprecated: min,opt,max batch sizes; use --min-shape, --opt-shape and --max-shape.")
@click.option("--workspace-mb", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Most scratch GPU memory a layer may use while building and running.")
@calibration_options
@quiet_option
def build_engines(deploy: str, precision: str, min_shape: list[int] | None, opt_shape: list[int] | None,
                  max_shape: list[int] | None, batch_profile: list[int] | None, workspace_mb: int, calib_size: int,
                  calib_data: str | None, quiet: bool) -> None:
    """Build one TensorRT engine per ONNX graph in DEPLOY and record it in the manifest.

    int8 on TensorRT >= 10 compiles the Q/DQ graphs of `oatdeploy quantize DEPLOY --precision int8`;
    before 10 it calibrates on DEPLOY/calib.npz (or --calib-data)."""
    from oatdeploy.runtime.engines import build_engines as build
    from oatdeploy.runtime.folder import read_manifest

    if batch_profile is not None:
        warn_renamed("--batch MIN,OPT,MAX", "--min-shape, --opt-shape and --max-shape NxCxHxW")
    else:
        batch_profile = profile_batches((min_shape, opt_shape, max_shape), read_manifest(deploy).model.input_shape)
    engines = build(deploy, precision=precision, batch_profile=batch_profile, workspace_mb=workspace_mb,
                    calib_size=calib_size, calib_data=calib_data, progress=not quiet)
    for e in engines:
        batch = f"{e.batch_profile.min}..{e.batch_profile.max}" if e.batch_profile else "?"
        click.echo(f"{e.path}  ({e.precision} via {e.method} from {e.onnx}, batch {batch}, TensorRT {e.trt_version}, "
                   f"{e.device} sm{e.compute_capability})")
    click.echo(f"recorded {len(engines)} engine(s) in {deploy}/manifest.json")
