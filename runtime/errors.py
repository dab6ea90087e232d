"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""

from __future__ import annotations


class OatError(Exception):
    """Bad input or usage: the message names the problem and the fix."""


class DatasetMissing(OatError):
    """Dataset files are not where they were looked for."""


class ArtifactError(OatError):
    """A checkpoint, manifest or engine is missing, of an unknown version, or fails its sha256."""


class InputError(OatError, ValueError):
    """An array a runner cannot take (shape, dtype, batch, λ index); nothing was sent to the device."""


class OatWarning(UserWarning):
    """Something to report without stopping: a stale optional artifact, a profile from another power mode."""
