"""Options and option callbacks that several commands share, defined once (both sides use them). Python 3.8+."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import click

from oatdeploy.runtime.backends import BACKENDS
from oatdeploy.runtime.manifest import PRECISIONS
from oatdeploy.runtime.selection import OBJECTIVES, Budget


def calibration_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--calib-size and --calib-data, as `quantize` and `build-engines` take them for int8."""
    command = click.option("--calib-data", type=click.Path(dir_okay=False), default=None,
                           help="int8: an .npz with an 'x' array [N, C, H, W] in [0, 1]  [default: DEPLOY/calib.npz, "
                                "written by export from the training set]")(command)
    return click.option("--calib-size", type=click.IntRange(min=1), default=512, show_default=True,
                        help="int8: how many calibration images to use.")(command)


class FloatList(click.ParamType):
    """'0,0.1,1' (the command line) or [0, 0.1, 1] (a replayed config.json) -> [0.0, 0.1, 1.0]."""

    name = "x,y,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[float]:
        items = list(value) if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v.strip()]
        try:
            values = [float(v) for v in items]
        except (TypeError, ValueError):
            self.fail(f"expected comma-separated numbers like 0,0.1,1, got {value!r}", param, ctx)
        if not values:
            self.fail("expected at least one number", param, ctx)
        return values


def budget_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--max-latency-ms, --min-robust-acc, --min-clean-acc, --objective and --strict, handed to the command as one
    `budget` argument (a `Budget`), as `select`, `plot` and `predict` take it."""
    names = [f.name for f in dataclasses.fields(Budget)]

    @functools.wraps(command)
    def with_budget(**kwargs: Any) -> Any:
        return command(budget=Budget(**{k: kwargs.pop(k) for k in names}), **kwargs)

    for decorator in reversed([
        click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="p50 on this device at most this (the measured p50, not its spread; needs "
                          "`oatdeploy profile`)."),
        click.option("--min-robust-acc", type=click.FloatRange(0, 1), default=None,
                     help="RA at least this (the point estimate, not its 95 % interval)."),
        click.option("--min-clean-acc", type=click.FloatRange(0, 1), default=None,
                     help="SA at least this (the point estimate, not its 95 % interval)."),
        click.option("--objective", type=click.Choice(OBJECTIVES), default="clean", show_default=True,
                     help="What the chosen variant maximises within the budget: SA (clean) or RA (robust)."),
        click.option("--strict", is_flag=True,
                     help="Compare point estimates: no ties for accuracies whose 95 % intervals overlap or "
                          "latencies within their profiling spread (docs/selection.md)."),
    ]):
        with_budget = decorator(with_budget)
    return with_budget


def graph_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--backend and --precision: which of a variant's artifacts runs (ONNX Runtime or TensorRT, at what precision)."""
    command = click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True)(command)
    return click.option("--backend", type=click.Choice(BACKENDS), default="ort", show_default=True)(command)


def float_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    """'0,0.1,1' -> [0.0, 0.1, 1.0]; a bad value is a usage error (exit 2) naming the option."""
    return None if value is None else FloatList().convert(value, param, ctx)


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
