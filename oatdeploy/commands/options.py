"""Shared click options and option callbacks, and options derived from a config dataclass's fields."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

import click

from oatdeploy.config import default_of, option_name, option_text, user_fields


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
        items = list(value) if isinstance(value, list | tuple) else [v for v in str(value).split(",") if v.strip()]
        try:
            values = [float(v) for v in items]
        except (TypeError, ValueError):
            self.fail(f"expected comma-separated numbers like 0,0.1,1, got {value!r}", param, ctx)
        if not values:
            self.fail("expected at least one number", param, ctx)
        return values


def budget_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--max-latency-ms, --min-robust-acc, --min-clean-acc and --objective: a budget as `select` takes it."""
    for decorator in reversed([
        click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="p50 on this device at most this (the measured p50, not its spread; needs "
                          "`oatdeploy profile`)."),
        click.option("--min-robust-acc", type=click.FloatRange(0, 1), default=None,
                     help="RA at least this (the point estimate, not its 95 % interval)."),
        click.option("--min-clean-acc", type=click.FloatRange(0, 1), default=None,
                     help="SA at least this (the point estimate, not its 95 % interval)."),
        click.option("--objective", type=click.Choice(["clean", "robust"]), default="clean", show_default=True,
                     help="What the chosen variant maximises within the budget."),
    ]):
        command = decorator(command)
    return command


def graph_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--backend and --precision: which of a variant's artifacts runs (ONNX Runtime or TensorRT, at what precision)."""
    command = click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
                           show_default=True)(command)
    return click.option("--backend", type=click.Choice(["ort", "trt"]), default="ort", show_default=True)(command)


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


SCALARS: dict[str, click.ParamType] = {"str": click.STRING, "int": click.INT, "float": click.FLOAT,
                                      "list[float]": FloatList()}


def field_option(f: dataclasses.Field[Any], **spec: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option for one config field: its name, type and default come from the field; `spec` adds help,
    a narrower type (a range, a choice), `default` or `required`."""
    base = str(f.type).replace(" | None", "")
    spec.setdefault("default", default_of(f))
    if base == "bool":
        on = option_name(f).partition("/")[0]
        decls = [option_name(f) if "/" in option_name(f) else f"{on}/--no-{on.removeprefix('--')}", f.name]
        return click.option(*decls, show_default=True, **spec)
    if base not in SCALARS and "type" not in spec:
        raise TypeError(f"no click type for config field {f.name}: {f.type}; give one in its option spec")
    spec.setdefault("type", SCALARS.get(base))
    if isinstance(spec["default"], list | tuple):  # shown as typed: 0,0.1,1
        spec["default"] = option_text(f, spec["default"]).partition(" ")[2]
    spec.setdefault("show_default", not spec.get("required"))
    return click.option(option_name(f), f.name, **spec)


def config_options(config_cls: type, specs: Mapping[str, Mapping[str, Any]], only: Collection[str] | None = None,
                   defaults: Mapping[str, Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """One option per user field of `config_cls` (or those in `only`), in field order, defined once for every
    command that takes them; `defaults` overrides a field's default for one command."""
    fields = [f for f in user_fields(config_cls) if only is None or f.name in only]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for f in reversed(fields):  # click lists options in the order their decorators are applied, last first
            spec = dict(specs.get(f.name, {}))
            if defaults and f.name in defaults:
                spec["default"] = defaults[f.name]
            command = field_option(f, **spec)(command)
        return command

    return decorate
