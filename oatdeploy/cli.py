"""The `oatdeploy` command line.

Subcommands live in `oatdeploy.commands.*` and are imported only when invoked
(click's lazy-group pattern), so device-side commands never import torch.
Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 internal error.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

import click

from oatdeploy import __version__
from oatdeploy.errors import OatError, OatWarning

COMMANDS: dict[str, str] = {
    "train": "oatdeploy.commands.train:train",
    "eval": "oatdeploy.commands.evaluate:evaluate",
    "demo": "oatdeploy.commands.demo:demo",
    "import-reference": "oatdeploy.commands.import_reference:import_reference",
    "export": "oatdeploy.commands.export:export",
    "build-engines": "oatdeploy.commands.build_engines:build_engines",
    "quantize": "oatdeploy.commands.quantize:quantize",
    "verify": "oatdeploy.commands.verify:verify",
    "profile": "oatdeploy.commands.profile:profile",
    "select": "oatdeploy.commands.select:select",
    "plot": "oatdeploy.commands.plot:plot",
    "info": "oatdeploy.commands.info:info",
    "predict": "oatdeploy.commands.predict:predict",
    "bench": "oatdeploy.commands.bench:bench",
}


# What runs on the device, on Python 3.8+ without torch; the rest (the workstation side) needs Python 3.10+.
DEVICE_COMMANDS = {"build-engines", "quantize", "verify", "profile", "select", "plot", "bench"}


def needs_python_310(name: str) -> click.Command:
    """Stands in for a workstation command on an older Python: listed in --help, refusing to run (exit 2)."""
    def refuse(**_: Any) -> None:
        raise OatError(f"`oatdeploy {name}` is workstation-side and needs Python 3.10+ (this is "
                       f"{sys.version.split()[0]}); the device commands ({', '.join(sorted(DEVICE_COMMANDS))}) "
                       "run on 3.8+")

    return click.Command(name, callback=refuse, help="(workstation side: needs Python 3.10+)",
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        if cmd_name not in DEVICE_COMMANDS and sys.version_info < (3, 10):
            return needs_python_310(cmd_name)
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="oatdeploy")
def cli() -> None:
    """Once-for-All Adversarial Training: train, export, build engines, run on the device."""


def show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
    """Our own warnings (a stale engine, a profile from another power mode) as one `warning:` line."""
    if issubclass(category, OatWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        click.echo(warnings.formatwarning(message, category, filename, lineno, line).rstrip(), err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps user errors to exit 2 with one clear line."""
    warnings.showwarning = show_warning
    try:
        rc = cli.main(args=argv, prog_name="oatdeploy", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except OatError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except FileNotFoundError as e:
        click.echo(f"error: file not found: {e.filename or e}. Check the path.", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
