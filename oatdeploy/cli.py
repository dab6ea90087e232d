"""The `oatdeploy` command line.

Subcommands live in `oatdeploy.commands.*` and are imported only when invoked
(click's lazy-group pattern), so device-side commands never import torch.
Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 internal error.
"""

from __future__ import annotations

import importlib
import sys

import click

from oatdeploy import __version__
from oatdeploy.errors import OatError

COMMANDS: dict[str, str] = {
    "train": "oatdeploy.commands.train:train",
    "eval": "oatdeploy.commands.evaluate:evaluate",
    "demo": "oatdeploy.commands.demo:demo",
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


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="oatdeploy")
def cli() -> None:
    """Once-for-All Adversarial Training: train, export, build engines, run on the device."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps user errors to exit 2 with one clear line."""
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
