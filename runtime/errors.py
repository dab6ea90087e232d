"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""

from __future__ import annotations


class OatError(Exception):
    """Bad input or usage: the message names the problem and the fix."""


class OptionError(OatError):
    """Options every process of a launch finds wrong alike (torchrun): rank 0 alone reports it."""


class DatasetMissing(OatError):
    """Dataset files are not where they were looked for."""


class ArtifactError(OatError):
    """A checkpoint, manifest or engine is missing, of an unknown version, or fails its sha256."""


class InputError(OatError, ValueError):
    """An array a runner cannot take (shape, dtype, batch, λ index); nothing was sent to the device."""


class OatWarning(UserWarning):
    """Something to report without stopping: a stale optional artifact, a profile from another power mode."""


def checkout_as_namespace(parent: object) -> ImportError:
    """Run from the folder that holds a checkout named `oatdeploy`, `import oatdeploy` finds the checkout itself:
    a folder without `__init__.py`, which Python imports as an empty namespace package (the current folder comes
    first on sys.path, and an editable install's finder only after it). Its subpackages `runtime` and `export`
    are found through it and raise this when the package they are in has no `__file__`, rather than let the
    user fail later on a missing name."""
    folder = next(iter(getattr(parent, "__path__", [])), "oatdeploy")
    return ImportError(f"`import oatdeploy` found the folder {folder} (an oatdeploy checkout, which Python takes "
                       "for an empty namespace package when Python runs in the folder that holds it), not the "
                       f"package; run Python from another folder, e.g. `cd {folder}`")
