"""`oatdeploy quantize`: int8 (static, Q/DQ) and fp16 ONNX models that ONNX Runtime runs on any machine.

The int8 model is the CPU analogue of a TensorRT int8 engine: symmetric int8 activations and
per-channel int8 weights in Q/DQ form (the layout TensorRT's explicit quantization also reads),
calibrated on calib.npz. Outputs go to DEPLOY/quantized/<graph stem>-<precision>.onnx and are recorded
per variant as `quantized[precision] = {onnx, sha256}`. Torch-free.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oatdeploy.atomic import atomic_path, sha256_file
from oatdeploy.errors import OatError
from oatdeploy.export.calibration import OrtCalibrationReader, load_calibration
from oatdeploy.export.engines import graphs
from oatdeploy.runtime.manifest import load_manifest, update_variants

PRECISIONS = ("int8", "fp16")
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]  # the compute; per-λ tables (Gather) and adds stay float


def quantized_relpath(onnx_rel: str, precision: str) -> str:
    return f"quantized/{Path(onnx_rel).stem}-{precision}.onnx"


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

    with atomic_path(dst) as tmp, quiet_preprocess_hint():
        quantize_static(str(src), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
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
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))


def quantize_deployment(deploy_dir: str | Path, precision: str = "int8", calib_size: int = 512,
                        calib_batch: int = 32, calib_data: str | Path | None = None,
                        progress: bool = True) -> list[dict[str, Any]]:
    """Quantize every distinct graph of a deployment; returns one {onnx, sha256, variants} row per graph."""
    if precision not in PRECISIONS:
        raise OatError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    deploy_dir = Path(deploy_dir)
    manifest = load_manifest(deploy_dir)
    calib = load_calibration(deploy_dir, limit=calib_size, source=calib_data) if precision == "int8" else None
    rows = []
    from tqdm import tqdm

    for onnx_rel, variants in tqdm(graphs(manifest).items(), desc=f"quantize ({precision})", unit="graph",
                                   disable=not progress):
        rel = quantized_relpath(onnx_rel, precision)
        if calib is not None:
            lam_count = len(manifest["model"]["lambdas"]) if "lam_index" in variants[0] else None
            quantize_int8(deploy_dir / onnx_rel, deploy_dir / rel,
                          OrtCalibrationReader(calib, min(calib_batch, len(calib)), lam_count))
        else:
            quantize_fp16(deploy_dir / onnx_rel, deploy_dir / rel)
        rows.append({"onnx": rel, "sha256": sha256_file(deploy_dir / rel), "variants": [v["id"] for v in variants]})
    record(deploy_dir, precision, rows)
    return rows


def record(deploy_dir: Path, precision: str, rows: list[dict[str, Any]]) -> None:
    """Record each quantized graph in the variants it serves."""
    by_id = {vid: row for row in rows for vid in row["variants"]}

    def edit(v: dict[str, Any]) -> None:
        if v["id"] in by_id:
            v.setdefault("quantized", {})[precision] = {"onnx": by_id[v["id"]]["onnx"],
                                                        "sha256": by_id[v["id"]]["sha256"]}

    update_variants(deploy_dir, edit)
