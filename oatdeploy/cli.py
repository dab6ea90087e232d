"""The `oatdeploy` command line: every command, workstation and device alike, in workflow order (`ORDER`).

Which side a command is on is where its module lives: `oatdeploy/commands` (torch, Python 3.10+) or
`runtime/commands` (the device: Python 3.8+, no torch). Commands are imported only when invoked.
Exit codes: 0 success, 2 bad input or usage (one line on stderr), 1 internal error, 130 Ctrl-C.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from typing import Any

import click

from oatdeploy import __version__
from oatdeploy.commands import WORKSTATION
from oatdeploy.runtime.commands import DEVICE, LazyGroup
from oatdeploy.runtime.errors import OatError, OatWarning, OptionError

# How `oatdeploy --help` lists them: the demo, the path from training to serving, then the optional steps.
ORDER = ("demo", "train", "eval", "export", "profile", "select", "predict", "plot", "info", "quantize", "verify",
         "build-engines", "import-reference", "bench")
COMMANDS = {name: {**WORKSTATION, **DEVICE}[name] for name in ORDER}


@click.group(cls=LazyGroup, commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
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


# What the operating system said, and what to do; every write is atomic, so nothing good was replaced.
OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space and run it again"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and run it again"),
    errno.EACCES: ("permission denied", "run it as a user who may write there, or choose another path"),
    errno.EPERM: ("operation not permitted", "run it as a user who may write there, or choose another path"),
    errno.EROFS: ("a read-only file system", "choose a path on a writable file system"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.ENAMETOOLONG: ("the path is too long", "choose a shorter path"),
    errno.EISDIR: ("it is a folder, not a file", "name a file"),
    errno.EEXIST: ("it exists and is not a folder", "choose another path"),
}


def os_error_line(e: OSError) -> str | None:
    """One line for an OSError a user can fix (disk full, no permission, read-only, a file in the path)."""
    known = OS_ERRORS.get(e.errno or 0)
    if known is None:
        return None
    verb = "write" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "use"
    where = f" {e.filename}" if e.filename else ""
    return f"cannot {verb}{where}: {known[0]}; {known[1]} (nothing that was there before was replaced)"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps user errors to exit 2 with one clear line."""
    warnings.showwarning = show_warning
    try:
        rc = cli.main(args=argv, prog_name="oatdeploy", standalone_mode=False)
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort: exit as the shell expects
            interrupted()
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except OatError as e:
        if not isinstance(e, OptionError) or os.environ.get("RANK", "0") == "0":  # one line per launch, not per rank
            click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except FileNotFoundError as e:
        click.echo(f"error: file not found: {e.filename or e}. Check the path.", err=True)
        sys.exit(2)
    except OSError as e:
        line = os_error_line(e)
        if line is None:
            raise
        click.echo(f"error: {line}", err=True)
        sys.exit(2)
    except RecursionError:
        click.echo("error: an input file nests its values too deeply to be one oatdeploy wrote; check the file",
                   err=True)
        sys.exit(2)
    except MemoryError:
        click.echo("error: out of memory; use a smaller batch, fewer samples, or a machine with more memory",
                   err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        interrupted()
    sys.exit(rc if isinstance(rc, int) else 0)


def interrupted() -> None:
    """Ctrl-C in any command: one line and exit 130 (128 + SIGINT), as training exits, never exit 1 (internal error)."""
    click.echo("interrupted (Ctrl-C)", err=True)
    sys.exit(130)


if __name__ == "__main__":
    main()
