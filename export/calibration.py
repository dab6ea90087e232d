"""Calibration images for int8: read from DEPLOY/calib.npz (written at export time), never from a dataset loader.

So a Jetson calibrates with numpy alone. The same batches feed ONNX Runtime's static quantizer and
TensorRT's entropy calibrator; shared (per-width) graphs get every λ index in turn, so the activation
ranges cover every trade-off the graph will serve. Torch-free; `tensorrt` only inside `entropy_calibrator`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from oatdeploy.atomic import atomic_write_bytes, sha256_file
from oatdeploy.errors import ArtifactError
from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME
from oatdeploy.runtime.manifest import load_manifest


def calibration_file(deploy_dir: str | Path, source: str | Path | None = None) -> tuple[Path, str]:
    """(path, sha256) of the images to calibrate on: DEPLOY/calib.npz checked against the manifest, or `source`.

    `source` is the user's own .npz with an `x` array [N, C, H, W] in [0, 1] (`--calib-data`), for when
    the export-time images (from the training set) are not what the device will see.
    """
    deploy_dir = Path(deploy_dir)
    if source is not None:
        path = Path(source)
        if not path.is_file():
            raise ArtifactError(f"--calib-data {path} does not exist; give an .npz holding an 'x' array of images "
                                "[N, C, H, W] in [0, 1], or leave it out to use DEPLOY/calib.npz")
        return path, sha256_file(path)
    entry = load_manifest(deploy_dir, verify=False).get("calibration")
    if not entry:
        raise ArtifactError(f"{deploy_dir}/manifest.json records no calibration images; re-export with "
                            "`oatdeploy export` (it writes calib.npz) or pass --calib-data")
    path = deploy_dir / entry["path"]
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; copy the whole deployment folder again or re-export")
    sha = sha256_file(path)
    if sha != entry["sha256"]:
        raise ArtifactError(f"{path} does not match its sha256 in the manifest (changed or corrupted); copy it "
                            "again or re-export")
    return path, sha


def load_calibration(deploy_dir: str | Path, limit: int | None = None, source: str | Path | None = None) -> np.ndarray:
    """float32 [N, C, H, W] calibration images (see `calibration_file`), shaped like the model's input."""
    path, _ = calibration_file(deploy_dir, source)
    return read_images(deploy_dir, path, limit, user_file=source is not None)


def read_images(deploy_dir: str | Path, path: Path, limit: int | None, user_file: bool) -> np.ndarray:
    """The `x` array of an already checked calibration .npz, checked against the model's input shape."""
    fix = "write x as float32 [N, C, H, W] in [0, 1]" if user_file else "re-export the deployment"
    try:
        with np.load(path) as npz:
            if "x" not in npz:
                raise ArtifactError(f"{path} has no 'x' array; {fix}")
            x = npz["x"]
    except (ValueError, OSError) as e:
        raise ArtifactError(f"{path} is not a readable .npz ({e}); {fix}") from None
    x = np.ascontiguousarray(x[:limit] if limit else x, dtype=np.float32)
    expected = tuple(load_manifest(deploy_dir, verify=False)["model"]["input_shape"])
    if x.ndim != 4 or not len(x) or tuple(x.shape[1:]) != expected:
        dims = ", ".join(map(str, expected))
        raise ArtifactError(f"{path} holds images {tuple(x.shape)}, the model takes [N, {dims}]; {fix}")
    return x


def calibration_feeds(x: np.ndarray, batch_size: int, lam_count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
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

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def calibration_cache_path(deploy_dir: Path, stem: str, calib_sha: str) -> Path:
    """Scales cached per graph and per calibration set, so new images are never calibrated with stale scales."""
    return deploy_dir / "engines" / f"{stem}-int8-{calib_sha[:12]}.calib"


def entropy_calibrator(x: np.ndarray, batch_size: int, cache_path: Path, cuda: Any,
                       lam_count: int | None = None) -> Any:
    """A trt.IInt8EntropyCalibrator2 over `x`, feeding device buffers allocated once.

    The int8 calibrator API is deprecated since TensorRT 10.1 in favour of explicit (Q/DQ) quantization
    (docs.nvidia.com/deeplearning/tensorrt/api/c_api/deprecated.html) but still works through 10.x.
    """
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by the pybind base class
            self.feeds = calibration_feeds(x, batch_size, lam_count)
            self.stream = cuda.stream_create()
            first = next(calibration_feeds(x, batch_size, lam_count))
            self.device = {name: cuda.alloc(arr.nbytes) for name, arr in first.items()}

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            feed = next(self.feeds, None)
            if feed is None:
                return None
            for name, arr in feed.items():
                cuda.h2d_async(self.device[name], arr, self.stream)
            cuda.stream_sync(self.stream)
            return [self.device[name] for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write_bytes(cache_path, bytes(cache))

        def free(self) -> None:
            for ptr in self.device.values():
                cuda.free(ptr)
            cuda.stream_destroy(self.stream)
            self.device = {}

    return EntropyCalibrator()
