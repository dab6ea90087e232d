"""Shared click options and option callbacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def calibration_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--calib-size and --calib-data, as `quantize` and `build-engines` take them for int8."""
    command = click.option("--calib-data", type=click.Path(dir_okay=False), default=None,
                           help="int8: an .npz with an 'x' array [N, C, H, W] in [0, 1]  [default: DEPLOY/calib.npz, "
                                "written by export from the training set]")(command)
    return click.option("--calib-size", type=click.IntRange(min=1), default=512, show_default=True,
                        help="int8: how many calibration images to use.")(command)


def budget_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--max-latency-ms, --min-robust-acc, --min-clean-acc and --objective: a budget as `select` takes it."""
    command = click.option("--objective", type=click.Choice(["clean", "robust"]), default="clean", show_default=True,
                           help="What the chosen variant maximises within the budget.")(command)
    command = click.option("--min-clean-acc", type=click.FloatRange(0, 1), default=None)(command)
    command = click.option("--min-robust-acc", type=click.FloatRange(0, 1), default=None)(command)
    return click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
                        help="p50 latency on this device at most this (needs `oatdeploy profile`).")(command)


def float_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    """'0,0.1,1' -> [0.0, 0.1, 1.0]; a bad value is a usage error (exit 2) naming the option."""
    if value is None:
        return None
    try:
        values = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers like 0,0.1,1, got {value!r}") from None
    if not values:
        raise click.BadParameter("expected at least one number")
    return values


def int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """'3,32,32' -> [3, 32, 32]."""
    if value is None:
        return None
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 3,32,32, got {value!r}") from None
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return values
