"""`oatdeploy quantize`: int8 (static, Q/DQ) and fp16 ONNX models that ONNX Runtime runs on any machine.

The int8 model is symmetric int8 activations and per-channel int8 weights in Q/DQ form, calibrated on
calib.npz: ONNX Runtime serves it anywhere, and TensorRT ≥ 10 compiles this same graph into the int8
engine (explicit quantization), so what `verify` measured is what the engine computes. Outputs go to
DEPLOY/quantized/<graph stem>-<precision>-<sha12>.onnx, each written under a new name and recorded per
variant (its `quantized[precision]`) before the one it replaces is deleted. Torch-free.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterator

from oatdeploy.runtime.artifacts import build_lock, sweep, write_artifact
from oatdeploy.runtime.atomic import PathLike
from oatdeploy.runtime.calibration import OrtCalibrationReader, load_calibration
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.folder import read_manifest, read_verified, update_variants
from oatdeploy.runtime.manifest import REDUCED, Manifest, Quantized, VariantEntry

QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]  # the compute; per-λ tables (Gather) and adds stay float


@contextlib.contextmanager
def quiet_preprocess_hint() -> Iterator[None]:
    """quantize_static logs a generic 'consider pre-processing' hint on the root logger for every graph; our
    graphs are exported with full shapes and already folded, so the hint is noise to a user."""
    class Hint(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "pre-process" not in record.getMessage()

    hint, root = Hint(), logging.getLogger()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


def quantize_int8(src: Path, dst: Path, reader: OrtCalibrationReader) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with quiet_preprocess_hint():
        quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANTIZED_OPS, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


def fp16_converter() -> Any:
    """onnxruntime's own converter when this onnxruntime ships it, else onnxconverter-common's; None if neither."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        try:
            from onnxconverter_common.float16 import convert_float_to_float16
        except ImportError:
            return None
    return convert_float_to_float16


def quantize_fp16(src: Path, dst: Path) -> None:
    import onnx

    convert = fp16_converter()
    if convert is None:
        raise OatError("no fp16 converter here: this onnxruntime lacks onnxruntime.transformers.float16; "
                       "`pip install onnxconverter-common`, or build fp16 TensorRT engines instead")
    model = convert(onnx.load(str(src)), keep_io_types=True)  # float32 in/out: callers never see fp16
    onnx.save(model, str(dst))


def quantize_deployment(deploy_dir: PathLike, precision: str = "int8", calib_size: int = 512,
                        calib_batch: int = 32, calib_data: PathLike | None = None,
                        progress: bool = True) -> list[tuple[Quantized, list[str]]]:
    """Quantize every distinct graph of a deployment; returns each quantized graph with the variants it serves."""
    if precision not in REDUCED:
        raise OatError(f"--precision must be one of {', '.join(REDUCED)}, got {precision!r}")
    deploy_dir = Path(deploy_dir)
    manifest = read_manifest(deploy_dir)
    calib = None
    if precision == "int8":
        calib, _ = load_calibration(deploy_dir, manifest, limit=calib_size, source=calib_data)
    rows = []
    from tqdm import tqdm

    with build_lock(deploy_dir), tempfile.TemporaryDirectory(prefix="oatdeploy-quantize-") as scratch:
        for onnx_rel, variants in tqdm(manifest.graphs().items(), desc=f"quantize ({precision})", unit="graph",
                                       disable=not progress):
            src = Path(scratch) / "source.onnx"  # the verified bytes, not whatever the folder holds later
            src.write_bytes(read_verified(deploy_dir, onnx_rel, variants[0].sha256))
            stem = f"{Path(onnx_rel).stem}-{precision}"
            if calib is not None:
                reader = OrtCalibrationReader(calib, min(calib_batch, len(calib)), manifest.lam_count(variants))
                ref = write_artifact(deploy_dir, "quantized", stem, ".onnx",
                                     lambda tmp, src=src, reader=reader: quantize_int8(src, tmp, reader))
            else:
                ref = write_artifact(deploy_dir, "quantized", stem, ".onnx",
                                     lambda tmp, src=src: quantize_fp16(src, tmp))
            row = (Quantized(ref.path, ref.sha256), [v.id for v in variants])
            manifest = record(deploy_dir, manifest, precision, *row)
            rows.append(row)
        sweep(deploy_dir, manifest)
    return rows


def record(deploy_dir: Path, expect: Manifest, precision: str, graph: Quantized, served: list[str]) -> Manifest:
    """Record one quantized graph in the variants it serves (replacing that precision's previous graph)."""
    def edit(v: VariantEntry) -> None:
        if v.id in served:
            v.quantized[precision] = graph

    return update_variants(deploy_dir, edit, expect)


