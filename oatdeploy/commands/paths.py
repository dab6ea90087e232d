"""Path arguments that answer a folder where a file belongs with the file to pass, not click's "is a directory"."""

from __future__ import annotations

from pathlib import Path

import click

from oatdeploy.overwrite import CHECKPOINT
from oatdeploy.runtime.errors import OatError


def checkpoint_file(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """CHECKPOINT given as a run folder: name the checkpoint inside it (one line, exit 2)."""
    folder = Path(value)
    if folder.is_dir():
        inside = folder / CHECKPOINT
        fix = (f"pass the checkpoint inside it: {ctx.command_path} {inside} ..." if inside.is_file()
               else f"pass a checkpoint file (a run's {CHECKPOINT})")
        raise OatError(f"{value} is a folder; {fix}")
    return value
