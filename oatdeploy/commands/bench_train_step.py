"""`oatdeploy bench train-step`: seconds per OAT training step on random data (the workstation half of `bench`)."""

from __future__ import annotations

import json
import statistics

import click

from oatdeploy.commands.config_options import LazyChoice, architectures, device_option
from oatdeploy.runtime.commands.options import RENAMED_JSON, Command, float_list, format_option, int_list


@click.command("train-step", cls=Command, renamed=RENAMED_JSON)
@click.option("--arch", type=LazyChoice(architectures), default="resnet34", show_default=True,
              help="The supernet timed (oatdeploy.models.list_models()).")
@click.option("--batch-size", type=click.IntRange(min=2), default=16, show_default=True,
              help="Training batch (as `train --batch-size`).")
@click.option("--pgd-steps", type=click.IntRange(min=0), default=3, show_default=True,
              help="PGD steps per adversarial example (as `train --pgd-steps`).")
@click.option("--steps", type=click.IntRange(min=1), default=10, show_default=True, help="Timed steps.")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True,
              help="Untimed steps first (allocation, autotuning).")
@click.option("--input-shape", default="3x32x32", show_default=True, callback=int_list,
              help="C x H x W of the random images: 3x32x32 or 3,32,32.")
@click.option("--widths", default="1", show_default=True, callback=float_list,
              help="Width fractions trained per step, as `train --widths`.")
@device_option
@format_option
def train_step(arch: str, batch_size: int, pgd_steps: int, steps: int, warmup: int, input_shape: list[int],
               widths: list[float], device: str, fmt: str) -> None:
    """Seconds per OAT training step on random data (median over --steps after --warmup)."""
    import torch

    from oatdeploy.bench import train_step_seconds
    from oatdeploy.devices import resolve_device
    from oatdeploy.runtime.device import cpu_name
    from oatdeploy.runtime.errors import OatError

    if len(input_shape) != 3:
        raise OatError(f"--input-shape takes C,H,W (three integers, like 3x32x32), got {input_shape}")
    times = train_step_seconds(arch, batch_size, pgd_steps, steps, tuple(input_shape), tuple(widths), warmup,
                               device)
    result = {
        "arch": arch, "batch_size": batch_size, "pgd_steps": pgd_steps, "input_shape": input_shape,
        "widths": widths, "steps": steps, "median_s": statistics.median(times), "min_s": min(times),
        "times_s": times, "device": resolve_device(device).type,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": cpu_name(),
    }
    if fmt == "json":
        click.echo(json.dumps(result))
    else:
        click.echo(f"{arch} batch {batch_size} PGD-{pgd_steps} {'x'.join(map(str, input_shape))}: "
                   f"median {result['median_s']:.3f} s/step over {steps} steps ({result['device']})")
