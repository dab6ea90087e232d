"""`oatdeploy build-engines`: one TensorRT engine per distinct ONNX graph, built on the GPU that will run it.

Torch-free (it runs on a Jetson). One timing cache, kept in the deployment folder, is shared by every
build, so the second and later graphs (and re-builds) skip most tactic timing. Each engine is written
atomically and recorded, with what it is tied to (TensorRT version, GPU, compute capability, batch
profile), in every variant it serves; shared-mode graphs serve all λ of one width.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oatdeploy.atomic import atomic_save, atomic_write_bytes, sha256_file
from oatdeploy.errors import OatError
from oatdeploy.export.calibration import (
    calibration_cache_path,
    calibration_file,
    entropy_calibrator,
    read_images,
)
from oatdeploy.runtime.backends import require_tensorrt
from oatdeploy.runtime.backends.base import INPUT_NAME
from oatdeploy.runtime.backends.cuda_mem import get_cuda
from oatdeploy.runtime.backends.trt import current_device
from oatdeploy.runtime.manifest import load_manifest, update_variants

PRECISIONS = ("fp32", "fp16", "int8")
def check_profile(batch_profile: Sequence[int]) -> tuple[int, int, int]:
    """(min, opt, max) batch sizes with 1 ≤ min ≤ opt ≤ max."""
    if len(batch_profile) != 3:
        raise OatError(f"--batch takes min,opt,max (e.g. 1,1,32), got {','.join(map(str, batch_profile))}")
    lo, opt, hi = (int(b) for b in batch_profile)
    if not 1 <= lo <= opt <= hi:
        raise OatError(f"--batch needs 1 <= min <= opt <= max, got {lo},{opt},{hi}")
    return lo, opt, hi


def engine_relpath(onnx_rel: str, precision: str) -> str:
    """engines/<variant id or graph stem>-<precision>.engine (folded graphs are named by their variant id)."""
    return f"engines/{Path(onnx_rel).stem}-{precision}.engine"


def timing_cache_path(deploy_dir: Path, device: dict[str, str]) -> Path:
    """Timing is only valid for one GPU and TensorRT: one cache file per (device, version)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{device['device']}-sm{device['compute_capability']}-"
                                          f"trt{device['trt_version']}").strip("-")
    return deploy_dir / "engines" / f"timing-{slug}.cache"


def graphs(manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each distinct ONNX path → the variants it serves, in manifest order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for v in manifest["variants"]:
        out.setdefault(v["onnx"], []).append(v)
    return out


def build_engines(deploy_dir: str | Path, precision: str = "fp32", batch_profile: Sequence[int] = (1, 1, 32),
                  workspace_mb: int = 1024, calib_size: int = 512, calib_batch: int = 32,
                  calib_data: str | Path | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Build and record one engine per distinct graph; returns the engine entries written."""
    if precision not in PRECISIONS:
        raise OatError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if workspace_mb < 1:
        raise OatError(f"--workspace-mb must be at least 1, got {workspace_mb}")
    profile = check_profile(batch_profile)
    require_tensorrt()
    import tensorrt as trt

    deploy_dir = Path(deploy_dir)
    manifest = load_manifest(deploy_dir)
    cuda = get_cuda()
    here = current_device(cuda)
    logger = trt.Logger(trt.Logger.WARNING)
    cache_file = timing_cache_path(deploy_dir, here)
    calib = None
    if precision == "int8":
        calib_path, calib_sha = calibration_file(deploy_dir, calib_data)
        calib = read_images(deploy_dir, calib_path, calib_size, user_file=calib_data is not None)
        calib_batch = min(calib_batch, len(calib), profile[2])
    entries: list[dict[str, Any]] = []
    cache = None
    from tqdm import tqdm

    for onnx_rel, variants in tqdm(graphs(manifest).items(), desc=f"build-engines ({precision})", unit="engine",
                                   disable=not progress):
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode, no flag needed
        parser = trt.OnnxParser(network, logger)
        if not parser.parse((deploy_dir / onnx_rel).read_bytes()):
            errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
            raise OatError(f"TensorRT could not parse {onnx_rel}: {errors}; re-export with this oatdeploy version")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        if cache is None:
            cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            cache = config.create_timing_cache(b"")  # a cache from another build setup: start afresh
            config.set_timing_cache(cache, ignore_mismatch=False)
        shape = tuple(manifest["model"]["input_shape"])
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(INPUT_NAME, *[(b, *shape) for b in profile])
        config.add_optimization_profile(opt_profile)
        calibrator = None
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            # Calibration runs at the calibration profile's opt shape: a fixed batch of calibration images.
            calib_profile = builder.create_optimization_profile()
            calib_profile.set_shape(INPUT_NAME, *[(calib_batch, *shape)] * 3)
            config.set_calibration_profile(calib_profile)
            lam_count = len(manifest["model"]["lambdas"]) if "lam_index" in variants[0] else None
            cache_path = calibration_cache_path(deploy_dir, Path(onnx_rel).stem, calib_sha)
            calibrator = entropy_calibrator(calib, calib_batch, cache_path, cuda, lam_count)
            config.int8_calibrator = calibrator
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.free()
        if serialized is None:
            raise OatError(f"TensorRT failed to build {onnx_rel} ({precision}); see its log above. Try a larger "
                           "--workspace-mb or a smaller --batch max")
        rel = engine_relpath(onnx_rel, precision)
        atomic_save(deploy_dir / rel, lambda tmp, data=serialized: tmp.write_bytes(memoryview(data)))
        entry = {"path": rel, "precision": precision, "sha256": sha256_file(deploy_dir / rel), **here,
                 "batch_profile": dict(zip(("min", "opt", "max"), profile, strict=True)),
                 "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "onnx": onnx_rel,
                 "workspace_mb": workspace_mb}
        if calib is not None:
            entry["calibration"] = {"samples": len(calib) // calib_batch * calib_batch, "batch": calib_batch,
                                    "sha256": calib_sha}
        record(deploy_dir, [v["id"] for v in variants], entry)
        entries.append(entry)
    if cache is not None:
        atomic_write_bytes(cache_file, memoryview(cache.serialize()).tobytes())
    return entries


def record(deploy_dir: Path, variant_ids: list[str], entry: dict[str, Any]) -> None:
    """Add the engine to the variants it serves; one rebuilt at the same path replaces the old entry."""
    def edit(v: dict[str, Any]) -> None:
        if v["id"] in variant_ids:
            v["engines"] = [e for e in v.get("engines") or [] if e.get("path") != entry["path"]] + [dict(entry)]

    update_variants(deploy_dir, edit)
