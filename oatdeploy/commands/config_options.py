"""The workstation commands' options: one per TrainConfig field (name, type and default come from the field), and
choices read from the torch side (the model registry) only when an option is parsed or its help shown."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any

import click

from oatdeploy.config import TrainConfig, default_of, option_name, option_text, user_fields
from oatdeploy.runtime.commands.options import FloatList


class LazyChoice(click.Choice):
    """A click.Choice whose choices come from `source()` on first use, so that listing the commands
    (`oatdeploy --help`, on a device without torch too) never imports the registry that defines them."""

    def __init__(self, source: Callable[[], Collection[str]]) -> None:
        self.source, self._choices, self.case_sensitive = source, None, True

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        if self._choices is None:
            self._choices = tuple(self.source())
        return self._choices


def architectures() -> list[str]:
    from oatdeploy.models import list_models

    return list_models()


def datasets() -> tuple[str, ...]:
    from oatdeploy.data import DATASETS

    return DATASETS


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


DEVICE_HELP = ("Where torch runs (training, attacks, evaluation): auto (a CUDA GPU when torch sees one, else the "
               "CPU), cpu, cuda or cuda:N.")


def device_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--device`, TrainConfig's field, for every command that trains, attacks or evaluates."""
    (device,) = [f for f in user_fields(TrainConfig) if f.name == "device"]
    return field_option(device, help=DEVICE_HELP)(command)
