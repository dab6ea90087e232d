"""Options and option callbacks that several commands share, defined once (both sides use them). Python 3.8+."""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable, Mapping, Sequence

import click

from oatdeploy.runtime.backends import BACKENDS
from oatdeploy.runtime.manifest import PRECISIONS
from oatdeploy.runtime.selection import OBJECTIVES, Budget

FORMATS = ("text", "json")  # what a command that prints data prints: text for people, JSON for programs


def warn_renamed(old: str, new: str) -> None:
    click.echo(f"warning: {old} is deprecated and will be removed in a later release; use {new}", err=True)


def modernize(args: Sequence[str], renamed: Mapping[str, str]) -> list[str]:
    """The command line with each old spelling in `renamed` ("--json": "--format json") replaced, warning once
    for each; `--old=value` keeps its value. Arguments after `--` are left alone."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + list(args[i:])
        name, eq, value = arg.partition("=")
        if name in renamed:
            warn_renamed(name, renamed[name])
            out += renamed[name].split() + ([value] if eq else [])
        else:
            out.append(arg)
    return out


class Command(click.Command):
    """A command that still accepts its options' old spellings (`renamed`, old -> new) for a release, each
    with a one-line warning on stderr; `--help` shows only the new ones."""

    def __init__(self, *args: Any, renamed: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.renamed = dict(renamed or {})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, modernize(args, self.renamed))


RENAMED_JSON = {"--json": "--format json"}
RENAMED_BATCH = {"--batch": "--batch-size"}


def format_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--format text|json, handed to the command as `fmt` (the old --json is `Command`'s rename)."""
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                        help="text for reading, json for programs (one JSON object on stdout).")(command)


def quiet_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--quiet: no progress bars (what a long-running command shows on stderr), for logs and scripts."""
    return click.option("--quiet", is_flag=True, help="No progress bars (results are still printed).")(command)


def batch_size_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--batch-size for inference: the batch this device's latency is profiled and looked up at."""
    return click.option("--batch-size", "batch", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Images per inference call: the batch whose profile this device's latency comes "
                             "from.")(command)


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
    command = click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                           help="The precision served: fp32, or the fp16/int8 models of `oatdeploy quantize` (ort) "
                                "or engines of `oatdeploy build-engines` (trt).")(command)
    return click.option("--backend", type=click.Choice(BACKENDS), default="ort", show_default=True,
                        help="ort: ONNX Runtime (CPU, or CUDA when usable); trt: this device's TensorRT "
                             "engines.")(command)


def float_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    """'0,0.1,1' -> [0.0, 0.1, 1.0]; a bad value is a usage error (exit 2) naming the option."""
    return None if value is None else FloatList().convert(value, param, ctx)


def parse_shape(value: str) -> list[int]:
    """'3x32x32' (as trtexec and Polygraphy write shapes) or '3,32,32' -> [3, 32, 32]; ValueError otherwise."""
    parts = re.split(r"[x,]", value.strip().lower())
    if not parts or any(not p.strip().isdigit() for p in parts):
        raise ValueError(f"expected a shape like 3x32x32 (or 3,32,32), got {value!r}")
    values = [int(p) for p in parts]
    if any(v < 1 for v in values):
        raise ValueError(f"expected positive sizes, got {value!r}")
    return values


def int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """'3x32x32' or '3,32,32' -> [3, 32, 32]; a bad value is a usage error naming the option."""
    if value is None:
        return None
    try:
        return parse_shape(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
