"""`oatdeploy build-engines` and the one rule for which engine serves on this device.

Engines are tied to the TensorRT version, the GPU and its compute capability: `engine_mismatches` is the
only compatibility check, used when `Deployment` picks a variant's engine (the runner then gets that
entry). Building is one engine per distinct graph (shared-mode graphs serve every λ of one width), from
the graph and by the path `plan_builds` gives for this TensorRT (see `backends.trt_build`); each engine
is written under a new name and recorded before the one it replaces is deleted (`runtime.artifacts`),
and the timing cache (and, on TensorRT < 10, calibration caches) are recorded with their sha256 too.
Torch-free, Python 3.8+; TensorRT only inside the compiler.
"""

from __future__ import annotations

import re
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from oatdeploy.runtime.artifacts import build_lock, sweep, write_artifact
from oatdeploy.runtime.atomic import PathLike
from oatdeploy.runtime.calibration import load_calibration
from oatdeploy.runtime.errors import ArtifactError, OatError, OatWarning
from oatdeploy.runtime.folder import check_file, read_manifest, read_verified, update_manifest
from oatdeploy.runtime.manifest import (
    BUILT_FOR,
    PRECISIONS,
    BatchProfile,
    Engine,
    EngineCache,
    EngineCalibration,
    Manifest,
    VariantEntry,
)

LABELS = {"trt_version": "TensorRT", "device": "GPU", "compute_capability": "compute capability"}


def tensorrt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def current_device(cuda: Any = None) -> dict[str, str]:
    """What an engine built here records: TensorRT version, GPU name (as latency keys name it), SM version."""
    import tensorrt as trt

    from oatdeploy.runtime.backends.cuda import get_cuda
    from oatdeploy.runtime.device import gpu_name

    cuda = cuda or get_cuda()
    return dict(zip(BUILT_FOR, (str(trt.__version__), gpu_name() or cuda.device_name(), cuda.compute_capability())))


def engine_mismatches(built_for: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """'what X at build, Y here' for each of TensorRT version, GPU and compute capability that differs."""
    return [f"{LABELS[k]} {built_for.get(k)!s} at build, {here.get(k)!s} here" for k in BUILT_FOR
            if str(built_for.get(k)) != str(here.get(k))]


def choose_engine(folder: PathLike, variant: VariantEntry, precision: str, batch: int,
                  here: dict[str, str], check_sha256: bool = True) -> Engine:
    """The newest engine of `precision` built for this device that takes `batch` and (when checked) is intact.

    An engine that is missing or altered while another one fits is reported (OatWarning), not fatal.
    """
    fix = build_fix(folder, variant, precision, here)
    engines = [e for e in variant.engines if e.precision == precision]
    if not engines:
        raise ArtifactError(f"{variant.id} has no {precision} TensorRT engine; {fix}")
    local = [e for e in engines if not engine_mismatches(e.built_for, here)]
    if not local:
        raise ArtifactError(f"{variant.id}'s {precision} engine does not fit this device "
                            f"({'; '.join(engine_mismatches(engines[-1].built_for, here))}); {fix}")
    fits = [e for e in local if e.batch_profile is None or e.batch_profile.max >= batch]
    if not fits:
        top = local[0].batch_profile.max if local[0].batch_profile else "?"
        raise ArtifactError(f"{variant.id}'s {precision} engine takes batches up to {top}, not {batch}; "
                            f"{build_fix(folder, variant, precision, here, batch)}")
    stale = []
    for entry in sorted(fits, key=lambda e: e.built_at or "", reverse=True):
        if not check_sha256:
            return entry
        try:
            check_file(folder, entry.path, entry.sha256)
        except ArtifactError as e:
            stale.append(str(e))
            continue
        for message in stale:
            warnings.warn(f"ignoring a stale engine of {variant.id}: {message}", OatWarning, stacklevel=3)
        return entry
    raise ArtifactError(f"{variant.id}'s {precision} engine is unusable: {stale[0]}; {fix}")


def build_fix(folder: PathLike, variant: VariantEntry, precision: str, here: dict[str, str],
              batch: int | None = None) -> str:
    """The exact commands that give `variant` a usable engine here: quantize first where this TensorRT builds
    from the quantized graph and there is none yet; `--max-shape NxCxHxW` when it must take batch N."""
    sample = "x".join(str(d) for d in read_manifest(folder).model.input_shape) if batch else ""
    build = f"oatdeploy build-engines {folder} --precision {precision}" + (
        f" --max-shape {batch}x{sample}" if batch else "")
    if (build_method(precision, here["trt_version"]) in ("int8-qdq", "fp16-onnx")
            and precision not in variant.quantized):
        return f"run `oatdeploy quantize {folder} --precision {precision}`, then `{build}` on this device"
    return f"run `{build}` on this device"


def check_profile(batch_profile: Sequence[int]) -> tuple[int, int, int]:
    """(min, opt, max) batch sizes with 1 ≤ min ≤ opt ≤ max."""
    if len(batch_profile) != 3:
        raise OatError(f"a batch profile is min,opt,max (e.g. 1,1,32), got {','.join(map(str, batch_profile))}")
    lo, opt, hi = (int(b) for b in batch_profile)
    if not 1 <= lo <= opt <= hi:
        raise OatError(f"the batch sizes of --min-shape, --opt-shape and --max-shape need 1 <= min <= opt <= max, "
                       f"got {lo}, {opt}, {hi}")
    return lo, opt, hi


class GraphJob(NamedTuple):
    """One engine to build: which ONNX it compiles, how, and which variants it will serve."""

    graph: str  # the fp32 graph the variants record (engines are named after it)
    source: str  # the ONNX compiled: the fp32 graph, or its quantized int8 (Q/DQ) or fp16 version
    source_sha256: str
    method: str  # fp32 | fp16-flag | fp16-onnx | int8-qdq | int8-calibrator
    variants: list[str]
    lam_count: int | None


def build_method(precision: str, trt_version: str) -> str:
    """The path this TensorRT takes to `precision`: explicit (Q/DQ) int8 from 10, the fp16 flag until 11."""
    major = tensorrt_major(trt_version)
    if precision == "int8":
        return "int8-qdq" if major >= 10 else "int8-calibrator"
    if precision == "fp16":
        return "fp16-onnx" if major >= 11 else "fp16-flag"
    return "fp32"


def plan_builds(folder: PathLike, manifest: Manifest, precision: str, trt_version: str) -> list[GraphJob]:
    """One job per distinct graph; refuses (naming the fix) when the graph a method needs is not there."""
    if precision not in PRECISIONS:
        raise OatError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    method = build_method(precision, trt_version)
    jobs = []
    for onnx_rel, variants in manifest.graphs().items():
        source, digest = onnx_rel, variants[0].sha256
        if method in ("int8-qdq", "fp16-onnx"):
            quantized = variants[0].quantized.get(precision)
            if not quantized:
                raise OatError(f"TensorRT {trt_version} builds {precision} engines from the {precision} ONNX model "
                               f"(explicit precision, so the engine computes what `oatdeploy verify` measured): run "
                               f"`oatdeploy quantize {folder} --precision {precision}` first")
            source, digest = quantized.onnx, quantized.sha256
        jobs.append(GraphJob(onnx_rel, source, digest, method, [v.id for v in variants],
                             manifest.lam_count(variants)))
    return jobs


def slug(device: dict[str, str]) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{device['device']}-sm{device['compute_capability']}-"
                                          f"trt{device['trt_version']}").strip("-")


def same_build(a: Engine, b: Engine) -> bool:
    """Two engines of one precision for one device and TensorRT: a rebuild replaces the older."""
    return a.precision == b.precision and not engine_mismatches(a.built_for, b.built_for)


def cached(manifest: Manifest, kind: str, here: dict[str, Any], onnx: str | None = None,
           calibration_sha256: str | None = None) -> EngineCache | None:
    """The recorded build cache of `kind` ('timing', 'calibration') for this device (and graph, calibration)."""
    return next((c for c in manifest.engine_caches if c.matches(kind, here, onnx, calibration_sha256)), None)


def read_cache(folder: Path, entry: EngineCache | None) -> bytes | None:
    """A recorded cache's bytes when they match their sha256; an altered or missing one is skipped, saying so."""
    if entry is None:
        return None
    try:
        return read_verified(folder, entry.path, entry.sha256)
    except ArtifactError as e:
        warnings.warn(f"not using a build cache: {e}", OatWarning, stacklevel=2)
        return None


def record_cache(folder: Path, expect: Manifest, kind: str, data: bytes | None, stem: str, here: dict[str, Any],
                 onnx: str | None = None, calibration_sha256: str | None = None) -> None:
    """Write a cache under a new name and record it in place of the one made for the same device (and graph)."""
    if not data:
        return
    ref = write_artifact(folder, "engines", stem, ".cache", lambda tmp: tmp.write_bytes(data))
    entry = EngineCache(ref.path, ref.sha256, kind=kind, onnx=onnx, calibration_sha256=calibration_sha256, **here)

    def edit(manifest: Manifest) -> None:
        kept = [c for c in manifest.engine_caches if not c.matches(kind, here, onnx, calibration_sha256)]
        manifest.engine_caches = [*kept, entry]

    update_manifest(folder, edit, expect)


def record_engine(folder: Path, expect: Manifest, job: GraphJob, engine: Engine) -> Manifest:
    """Add the engine to the variants it serves, in place of the same precision's build for this device."""
    def edit(manifest: Manifest) -> None:
        for v in manifest.variants:
            if v.id in job.variants:
                v.engines = [e for e in v.engines if not same_build(e, engine)] + [engine]

    return update_manifest(folder, edit, expect)


def build_engines(deploy_dir: PathLike, precision: str = "fp32", batch_profile: Sequence[int] = (1, 1, 32),
                  workspace_mb: int = 1024, calib_size: int = 512, calib_batch: int = 32,
                  calib_data: PathLike | None = None, progress: bool = True,
                  compiler: Any = None) -> list[Engine]:
    """Build and record one engine per distinct graph; returns the engines written.

    `compiler` defaults to TensorRT on this GPU (`backends.trt_build.TensorRTCompiler`); anything with its
    `device`, `compile`, `use_timing_cache`, `timing_cache` and `calibration_cache` members will do.
    """
    if precision not in PRECISIONS:
        raise OatError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if workspace_mb < 1:
        raise OatError(f"--workspace-mb must be at least 1, got {workspace_mb}")
    profile = check_profile(batch_profile)
    deploy_dir = Path(deploy_dir)
    manifest = read_manifest(deploy_dir)
    if compiler is None:
        from oatdeploy.runtime.backends import require_tensorrt

        require_tensorrt()
        from oatdeploy.runtime.backends.trt_build import TensorRTCompiler

        compiler = TensorRTCompiler(workspace_mb)
    here: dict[str, str] = {k: compiler.device[k] for k in BUILT_FOR}
    jobs = plan_builds(deploy_dir, manifest, precision, here["trt_version"])
    calib, calib_sha = None, None
    if jobs[0].method == "int8-calibrator":
        calib, calib_sha = load_calibration(deploy_dir, manifest, calib_size, calib_data)
        calib_batch = min(calib_batch, len(calib), profile[2])
    shape = tuple(manifest.model.input_shape)
    engines: list[Engine] = []
    from tqdm import tqdm

    with build_lock(deploy_dir):
        compiler.use_timing_cache(read_cache(deploy_dir, cached(manifest, "timing", here)))
        for job in tqdm(jobs, desc=f"build-engines ({precision})", unit="engine", disable=not progress):
            calibration = None
            if calib is not None:
                cache = cached(manifest, "calibration", here, job.graph, calib_sha)
                calibration = {"x": calib, "batch": calib_batch, "lam_count": job.lam_count,
                               "cache": read_cache(deploy_dir, cache)}
            data = compiler.compile(read_verified(deploy_dir, job.source, job.source_sha256), job.source,
                                    job.method, profile, shape, calibration)
            stem = f"{Path(job.graph).stem}-{precision}"
            written = write_artifact(deploy_dir, "engines", stem, ".engine", partial(Path.write_bytes, data=data))
            engine = Engine(written.path, written.sha256, precision, method=job.method, onnx=job.source,
                            batch_profile=BatchProfile(*profile),
                            built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), workspace_mb=workspace_mb,
                            trt_version=here["trt_version"], device=here["device"],
                            compute_capability=here["compute_capability"])
            if calib is not None:
                engine.calibration = EngineCalibration(len(calib) // calib_batch * calib_batch, calib_batch, calib_sha)
                record_cache(deploy_dir, manifest, "calibration", compiler.calibration_cache, f"{stem}-calibration",
                             here, job.graph, calib_sha)
            manifest = record_engine(deploy_dir, manifest, job, engine)
            engines.append(engine)
        record_cache(deploy_dir, manifest, "timing", compiler.timing_cache(), f"timing-{slug(here)}", here)
        sweep(deploy_dir, read_manifest(deploy_dir))
    return engines
