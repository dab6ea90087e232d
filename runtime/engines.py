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

from oatdeploy.atomic import PathLike
from oatdeploy.errors import ArtifactError, OatError, OatWarning
from oatdeploy.runtime.artifacts import build_lock, sweep, write_artifact
from oatdeploy.runtime.calibration import load_calibration
from oatdeploy.runtime.manifest import Manifest, check_file, read_manifest, read_verified, update_manifest
from oatdeploy.runtime.quantize import graphs, lam_count

PRECISIONS = ("fp32", "fp16", "int8")
MATCHED = ("trt_version", "device", "compute_capability")
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
    return {"trt_version": str(trt.__version__), "device": gpu_name() or cuda.device_name(),
            "compute_capability": cuda.compute_capability()}


def engine_mismatches(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """'what X at build, Y here' for each of TensorRT version, GPU and compute capability that differs."""
    return [f"{LABELS[k]} {recorded.get(k)!s} at build, {here.get(k)!s} here" for k in MATCHED
            if str(recorded.get(k)) != str(here.get(k))]


def choose_engine(folder: PathLike, variant: dict[str, Any], precision: str, batch: int,
                  here: dict[str, str], check_sha256: bool = True) -> dict[str, Any]:
    """The newest engine of `precision` built for this device that takes `batch` and (when checked) is intact.

    An engine that is missing or altered while another one fits is reported (OatWarning), not fatal.
    """
    fix = build_fix(folder, variant, precision, here)
    engines = [e for e in variant.get("engines") or [] if e.get("precision") == precision]
    if not engines:
        raise ArtifactError(f"{variant['id']} has no {precision} TensorRT engine; {fix}")
    local = [e for e in engines if not engine_mismatches(e, here)]
    if not local:
        raise ArtifactError(f"{variant['id']}'s {precision} engine does not fit this device "
                            f"({'; '.join(engine_mismatches(engines[-1], here))}); {fix}")
    fits = [e for e in local if int((e.get("batch_profile") or {}).get("max", batch)) >= batch]
    if not fits:
        raise ArtifactError(f"{variant['id']}'s {precision} engine takes batches up to "
                            f"{local[0]['batch_profile']['max']}, not {batch}; "
                            f"{build_fix(folder, variant, precision, here, batch)}")
    stale = []
    for entry in sorted(fits, key=lambda e: e.get("built_at") or "", reverse=True):
        if not check_sha256:
            return entry
        try:
            check_file(folder, entry["path"], entry["sha256"])
        except ArtifactError as e:
            stale.append(str(e))
            continue
        for message in stale:
            warnings.warn(f"ignoring a stale engine of {variant['id']}: {message}", OatWarning, stacklevel=3)
        return entry
    raise ArtifactError(f"{variant['id']}'s {precision} engine is unusable: {stale[0]}; {fix}")


def build_fix(folder: PathLike, variant: dict[str, Any], precision: str, here: dict[str, str],
              batch: int | None = None) -> str:
    """The exact commands that give `variant` a usable engine here: quantize first where this TensorRT builds
    from the quantized graph and there is none yet; `--batch 1,1,N` when it must take batch N."""
    build = f"oatdeploy build-engines {folder} --precision {precision}" + (f" --batch 1,1,{batch}" if batch else "")
    if (build_method(precision, here["trt_version"]) in ("int8-qdq", "fp16-onnx")
            and not (variant.get("quantized") or {}).get(precision)):
        return f"run `oatdeploy quantize {folder} --precision {precision}`, then `{build}` on this device"
    return f"run `{build}` on this device"


def check_profile(batch_profile: Sequence[int]) -> tuple[int, int, int]:
    """(min, opt, max) batch sizes with 1 ≤ min ≤ opt ≤ max."""
    if len(batch_profile) != 3:
        raise OatError(f"--batch takes min,opt,max (e.g. 1,1,32), got {','.join(map(str, batch_profile))}")
    lo, opt, hi = (int(b) for b in batch_profile)
    if not 1 <= lo <= opt <= hi:
        raise OatError(f"--batch needs 1 <= min <= opt <= max, got {lo},{opt},{hi}")
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
    for onnx_rel, variants in graphs(manifest).items():
        source, digest = onnx_rel, variants[0]["sha256"]
        if method in ("int8-qdq", "fp16-onnx"):
            quantized = (variants[0].get("quantized") or {}).get(precision)
            if not quantized:
                raise OatError(f"TensorRT {trt_version} builds {precision} engines from the {precision} ONNX model "
                               f"(explicit precision, so the engine computes what `oatdeploy verify` measured): run "
                               f"`oatdeploy quantize {folder} --precision {precision}` first")
            source, digest = quantized["onnx"], quantized["sha256"]
        jobs.append(GraphJob(onnx_rel, source, digest, method, [v["id"] for v in variants],
                             lam_count(manifest, variants)))
    return jobs


def slug(device: dict[str, str]) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"{device['device']}-sm{device['compute_capability']}-"
                                          f"trt{device['trt_version']}").strip("-")


def same_build(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two engine entries for one precision on one device and TensorRT: a rebuild replaces the older."""
    return a.get("precision") == b.get("precision") and not engine_mismatches(a, {k: b.get(k) for k in MATCHED})


def cached(manifest: Manifest, kind: str, **match: Any) -> dict[str, Any] | None:
    """The recorded build cache of `kind` ('timing', 'calibration') matching `match`, if any."""
    for c in manifest.get("engine_caches") or []:
        if c.get("kind") == kind and all(c.get(k) == v for k, v in match.items()):
            return c
    return None


def read_cache(folder: Path, entry: dict[str, Any] | None) -> bytes | None:
    """A recorded cache's bytes when they match their sha256; an altered or missing one is skipped, saying so."""
    if entry is None:
        return None
    try:
        return read_verified(folder, entry["path"], entry["sha256"])
    except ArtifactError as e:
        warnings.warn(f"not using a build cache: {e}", OatWarning, stacklevel=2)
        return None


def record_cache(folder: Path, kind: str, data: bytes | None, stem: str, **match: Any) -> None:
    """Write a cache under a new name and record it in place of the one with the same `match`."""
    if not data:
        return
    entry = {**write_artifact(folder, "engines", stem, ".cache", lambda tmp: tmp.write_bytes(data)),
             "kind": kind, **match}

    def edit(manifest: Manifest) -> None:
        kept = [c for c in manifest.get("engine_caches") or []
                if not (c.get("kind") == kind and all(c.get(k) == v for k, v in match.items()))]
        manifest["engine_caches"] = [*kept, entry]

    update_manifest(folder, edit)


def record_engine(folder: Path, job: GraphJob, entry: dict[str, Any]) -> Manifest:
    """Add the engine to the variants it serves, in place of the same precision's build for this device."""
    def edit(manifest: Manifest) -> None:
        for v in manifest["variants"]:
            if v["id"] in job.variants:
                v["engines"] = [e for e in v.get("engines") or [] if not same_build(e, entry)] + [dict(entry)]

    return update_manifest(folder, edit)


def build_engines(deploy_dir: PathLike, precision: str = "fp32", batch_profile: Sequence[int] = (1, 1, 32),
                  workspace_mb: int = 1024, calib_size: int = 512, calib_batch: int = 32,
                  calib_data: PathLike | None = None, progress: bool = True,
                  compiler: Any = None) -> list[dict[str, Any]]:
    """Build and record one engine per distinct graph; returns the engine entries written.

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
    here: dict[str, str] = compiler.device
    jobs = plan_builds(deploy_dir, manifest, precision, here["trt_version"])
    calib, calib_sha = None, None
    if jobs[0].method == "int8-calibrator":
        calib, calib_sha = load_calibration(deploy_dir, manifest, calib_size, calib_data)
        calib_batch = min(calib_batch, len(calib), profile[2])
    shape = tuple(manifest["model"]["input_shape"])
    entries: list[dict[str, Any]] = []
    from tqdm import tqdm

    with build_lock(deploy_dir):
        compiler.use_timing_cache(read_cache(deploy_dir, cached(manifest, "timing", **here)))
        for job in tqdm(jobs, desc=f"build-engines ({precision})", unit="engine", disable=not progress):
            calibration = None
            if calib is not None:
                match = {"onnx": job.graph, "calibration_sha256": calib_sha, **here}
                calibration = {"x": calib, "batch": calib_batch, "lam_count": job.lam_count,
                               "cache": read_cache(deploy_dir, cached(manifest, "calibration", **match))}
            data = compiler.compile(read_verified(deploy_dir, job.source, job.source_sha256), job.source,
                                    job.method, profile, shape, calibration)
            stem = f"{Path(job.graph).stem}-{precision}"
            written = write_artifact(deploy_dir, "engines", stem, ".engine", partial(Path.write_bytes, data=data))
            entry = {**written, "precision": precision, **here, "method": job.method, "onnx": job.source,
                     "batch_profile": dict(zip(("min", "opt", "max"), profile)),
                     "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "workspace_mb": workspace_mb}
            if calib is not None:
                entry["calibration"] = {"samples": len(calib) // calib_batch * calib_batch, "batch": calib_batch,
                                        "sha256": calib_sha}
                record_cache(deploy_dir, "calibration", compiler.calibration_cache, f"{stem}-calibration",
                             onnx=job.graph, calibration_sha256=calib_sha, **here)
            manifest = record_engine(deploy_dir, job, entry)
            entries.append(entry)
        record_cache(deploy_dir, "timing", compiler.timing_cache(), f"timing-{slug(here)}", **here)
        sweep(deploy_dir, read_manifest(deploy_dir))
    return entries
