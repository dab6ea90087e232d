"""Arrays of a deployment (.npz: calibration and verification images) parsed from the bytes that were hashed.

A file whose hash matches can still be garbage (its hash updated by hand, or a user's `--calib-data`): every
way numpy's reader fails, and an array of the wrong rank, size or values, is one `ArtifactError`. No pickles are
loaded. Python 3.8+.
"""

from __future__ import annotations

import io
import zipfile
from typing import Sequence

import numpy as np

from oatdeploy.runtime.errors import ArtifactError


def npz_arrays(data: bytes, label: str, keys: Sequence[str], fix: str) -> dict[str, np.ndarray]:
    """The named arrays of an .npz held in `data`: images (keys starting with x) as finite float32, labels
    as int64."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise ArtifactError(f"{label} has no {', '.join(repr(k) for k in missing)} array; {fix}")
            raw = {k: npz[k] for k in keys}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ArtifactError(f"{label} is not a readable .npz ({type(e).__name__}); {fix}") from None
    out = {}
    for k, a in raw.items():
        if a.dtype.kind not in "biuf" or not a.ndim or not len(a):
            raise ArtifactError(f"{label}: {k!r} is {a.dtype} of shape {a.shape}, not a non-empty numeric array; {fix}")
        if k.startswith("x"):
            a = np.ascontiguousarray(a, dtype=np.float32)
            if not np.isfinite(a).all():
                raise ArtifactError(f"{label}: {k!r} holds NaN or infinite values; {fix}")
        else:
            a = a.astype(np.int64)
        out[k] = a
    return out
