"""The device-side commands (Python 3.8+, no torch), and the lazy group every `oatdeploy` command hangs off.

A command lives in this folder exactly when it runs on the device; `DEVICE` lists them in workflow order.
The workstation's commands (`oatdeploy/commands`, torch, Python 3.10+) are listed the same way there.
Commands are imported only when invoked, so `oatdeploy --help` and the device commands never import torch.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import Any, Mapping

import click

from oatdeploy.runtime.errors import OatError

DEVICE: dict[str, str] = {
    "quantize": "oatdeploy.runtime.commands.quantize:quantize",
    "build-engines": "oatdeploy.runtime.commands.build_engines:build_engines",
    "verify": "oatdeploy.runtime.commands.verify:verify",
    "profile": "oatdeploy.runtime.commands.profile:profile",
    "select": "oatdeploy.runtime.commands.select:select",
    "plot": "oatdeploy.runtime.commands.plot:plot",
    "info": "oatdeploy.runtime.commands.info:info",
    "predict": "oatdeploy.runtime.commands.predict:predict",
    "bench": "oatdeploy.runtime.commands.bench:bench",
}


def on_device(target: str) -> bool:
    """Whether a "module:attr" command target is device-side (it lives in this package)."""
    return target.startswith(__name__ + ".")


def needs_python_310(name: str) -> click.Command:
    """Stands in for a workstation command on an older Python: listed in --help, refusing to run (exit 2)."""
    def refuse(**_: Any) -> None:
        raise OatError(f"`oatdeploy {name}` is workstation-side and needs Python 3.10+ (this is "
                       f"{sys.version.split()[0]}); the device commands ({', '.join(DEVICE)}) run on 3.8+")

    return click.Command(name, callback=refuse, help="(workstation side: needs Python 3.10+)",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


class LazyGroup(click.Group):
    """A group whose subcommands ("name" -> "module:attr", in the order listed) are imported on first use."""

    def __init__(self, *args: Any, commands: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy.get(cmd_name)
        if target is None:
            return None
        if not on_device(target) and sys.version_info < (3, 10):
            return needs_python_310(cmd_name)
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple:
        """An unknown command name gets the closest known ones as a suggestion."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in self.lazy:
            close = difflib.get_close_matches(name, list(self.lazy), n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; the commands are {', '.join(self.lazy)}"
            ctx.fail(f"No such command {name!r}{hint}")
        return super().resolve_command(ctx, args)
