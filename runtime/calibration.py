"""Calibration images for int8: read from DEPLOY/calib.npz (written at export time), never from a dataset loader.

So a Jetson calibrates with numpy alone. The same batches feed ONNX Runtime's static quantizer (whose Q/DQ
graphs TensorRT ≥ 10 compiles) and, on TensorRT < 10, its entropy calibrator; shared (per-width) graphs get
every λ index in turn, so the activation ranges cover every trade-off the graph will serve. The file's
bytes are hashed and then parsed from memory, never re-read. Torch-free, Python 3.8+.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from oatdeploy.runtime.arrays import npz_arrays
from oatdeploy.runtime.atomic import PathLike, read_bounded, sha256_bytes
from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME
from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.runtime.folder import MAX_ARTIFACT_BYTES, read_verified
from oatdeploy.runtime.manifest import Manifest


def calibration_bytes(deploy_dir: PathLike, manifest: Manifest, source: PathLike | None = None) -> tuple[bytes, str]:
    """(bytes, sha256) of the images to calibrate on: DEPLOY/calib.npz checked against the manifest, or `source`.

    `source` is the user's own .npz with an `x` array [N, C, H, W] in [0, 1] (`--calib-data`), for when
    the export-time images (from the training set) are not what the device will see.
    """
    if source is not None:
        path = Path(source)
        try:
            data = read_bounded(path, MAX_ARTIFACT_BYTES)
        except OSError as e:
            why = "does not exist" if isinstance(e, FileNotFoundError) else f"cannot be read ({e})"
            raise ArtifactError(f"--calib-data {path} {why}; give an .npz file holding an 'x' array of images "
                                "[N, C, H, W] in [0, 1], or leave it out to use DEPLOY/calib.npz") from None
        return data, sha256_bytes(data)
    entry = manifest.calibration
    if not entry:
        raise ArtifactError(f"{deploy_dir}/manifest.json records no calibration images; re-export with "
                            "`oatdeploy export` (it writes calib.npz) or pass --calib-data")
    return read_verified(deploy_dir, entry.path, entry.sha256, entry.size), entry.sha256


def parse_images(data: bytes, label: str, input_shape: tuple[int, ...], limit: int | None,
                 user_file: bool) -> np.ndarray:
    """The `x` array of a checked calibration .npz, as float32 [N, *input_shape] (no pickles are loaded)."""
    fix = "write x as float32 [N, C, H, W] in [0, 1]" if user_file else "re-export the deployment"
    x = npz_arrays(data, label, ["x"], fix)["x"]
    x = np.ascontiguousarray(x[:limit] if limit else x, dtype=np.float32)
    if x.ndim != 4 or not len(x) or tuple(x.shape[1:]) != tuple(input_shape):
        dims = ", ".join(map(str, input_shape))
        raise ArtifactError(f"{label} holds images {tuple(x.shape)}, the model takes [N, {dims}]; {fix}")
    return x


def load_calibration(deploy_dir: PathLike, manifest: Manifest, limit: int | None = None,
                     source: PathLike | None = None) -> tuple[np.ndarray, str]:
    """(float32 [N, C, H, W] calibration images, sha256 of their file); see `calibration_bytes`."""
    data, digest = calibration_bytes(deploy_dir, manifest, source)
    recorded = manifest.calibration
    label = str(source) if source is not None or recorded is None else f"{deploy_dir}/{recorded.path}"
    shape = tuple(manifest.model.input_shape)
    return parse_images(data, label, shape, limit, user_file=source is not None), digest


def calibration_feeds(x: np.ndarray, batch_size: int, lam_count: int | None = None) -> Iterator[dict[str, Any]]:
    """Full batches of `x` as input feeds; shared graphs cycle through λ indices 0..lam_count-1.

    Only full batches: TensorRT's calibrator needs a fixed batch size, and a last short batch adds little.
    """
    steps = max(len(x) // batch_size, 1)
    for i in range(steps):
        batch = x[i * batch_size:(i + 1) * batch_size]
        feed = {INPUT_NAME: np.ascontiguousarray(batch)}
        if lam_count:
            feed[LAM_INDEX_NAME] = np.array([i % lam_count], dtype=np.int64)
        yield feed


class OrtCalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over calib.npz (duck-typed: `get_next` is all it needs)."""

    def __init__(self, x: np.ndarray, batch_size: int, lam_count: int | None = None) -> None:
        self._feeds = calibration_feeds(x, batch_size, lam_count)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)
