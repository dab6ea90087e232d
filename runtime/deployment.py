"""A deployment folder on the device: its manifest, its variants as this device sees them, profiling."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from oatdeploy.errors import ArtifactError, OatError
from oatdeploy.runtime.backends import BACKENDS, get_runner, require_tensorrt
from oatdeploy.runtime.device import device_name, gpu_name, latency_key
from oatdeploy.runtime.manifest import load_manifest, update_variants
from oatdeploy.runtime.profile import measure
from oatdeploy.runtime.select import Variant, pareto_front, select

if TYPE_CHECKING:
    from oatdeploy.runtime.backends.base import Runner
    from oatdeploy.runtime.switcher import Switcher

PRECISIONS = ("fp32", "fp16", "int8")


class Deployment:
    """What `oatdeploy export` wrote, checked against its sha256s, with this device's latency profile."""

    def __init__(self, folder: Path, manifest: dict[str, Any], backend: str = "ort", precision: str = "fp32",
                 batch: int = 1) -> None:
        self.folder, self.manifest = folder, manifest
        self.backend, self.precision, self.batch = check_backend(backend), check_precision(precision), batch

    @classmethod
    def load(cls, folder: str | Path, verify: bool = True, backend: str = "ort", precision: str = "fp32",
             batch: int = 1) -> Deployment:
        folder = Path(folder)
        deployment = cls(folder, load_manifest(folder, verify=verify), backend, precision, batch)
        if backend == "trt":
            deployment.variants_for()  # refuses engines built for another GPU or TensorRT now, not mid-serve
        return deployment

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["model"]["input_shape"])

    @property
    def variants(self) -> list[Variant]:
        return self.variants_for()

    def device(self, backend: str | None = None) -> str:
        """The device name latencies are stored under for a backend on this machine."""
        backend = backend or self.backend
        if backend == "trt":
            return gpu_name() or "unknown GPU"
        from oatdeploy.runtime.backends.ort import cuda_usable

        return device_name(on_gpu=cuda_usable())

    def key(self, backend: str | None = None, precision: str | None = None, batch: int | None = None) -> str:
        return latency_key(self.device(backend), backend or self.backend, precision or self.precision,
                           batch or self.batch)

    def artifact(self, entry: dict[str, Any], backend: str, precision: str, batch: int | None = None) -> str:
        """The file that serves a variant: its ONNX, its quantized ONNX, or this device's engine."""
        if backend == "trt":
            return self.engine(entry, precision, batch or self.batch)["path"]
        if precision == "fp32":
            return entry["onnx"]
        quantized = (entry.get("quantized") or {}).get(precision)
        if quantized is None:
            raise ArtifactError(f"{entry['id']} has no {precision} ONNX model; serve it with --backend trt after "
                                f"`oatdeploy build-engines {self.folder} --precision {precision}`, or use fp32")
        return quantized["onnx"]

    def engine(self, entry: dict[str, Any], precision: str, batch: int) -> dict[str, Any]:
        """This precision's engine built on this GPU model with this TensorRT; anything else is refused."""
        fix = f"run `oatdeploy build-engines {self.folder} --precision {precision}` on this device"
        engines = [e for e in entry.get("engines") or [] if e.get("precision") == precision]
        if not engines:
            raise ArtifactError(f"{entry['id']} has no {precision} TensorRT engine; {fix}")
        here = gpu_name()
        local = [e for e in engines if e.get("device") == here]
        if not local:
            raise ArtifactError(f"{entry['id']}'s {precision} engine was built for {engines[0].get('device')!r}, "
                                f"this device is {here or 'not an NVIDIA GPU'!r}; {fix}")
        version = tensorrt_version()
        if version is not None:
            same = [e for e in local if e.get("trt_version") == version]
            if not same:
                raise ArtifactError(f"{entry['id']}'s {precision} engine was built with TensorRT "
                                    f"{local[0].get('trt_version')}, this device has {version}; {fix}")
            local = same
        fits = [e for e in local if (e.get("batch_profile") or {}).get("max", batch) >= batch]
        if not fits:
            raise ArtifactError(f"{entry['id']}'s {precision} engine takes batches up to "
                                f"{local[0]['batch_profile']['max']}, not {batch}; {fix} for batches up to {batch}")
        return max(fits, key=lambda e: e.get("built_at") or "")

    def variants_for(self, backend: str | None = None, precision: str | None = None,
                     batch: int | None = None) -> list[Variant]:
        """Variants with the accuracy of what this precision runs and the latency profiled on this device."""
        backend, precision = backend or self.backend, precision or self.precision
        key = self.key(backend, precision, batch)
        out = []
        for e in self.manifest["variants"]:
            metrics = (e.get("precision_metrics") or {}).get(precision) if precision != "fp32" else None
            metrics = metrics or e.get("metrics") or {}
            latency = (e.get("latency") or {}).get(key)
            out.append(Variant(id=e["id"], lam=e["lambda"], width=e["width"], clean_acc=metrics.get("clean_acc"),
                               robust_acc=metrics.get("robust_acc"),
                               latency_ms=latency["p50_ms"] if latency else None,
                               path=self.artifact(e, backend, precision, batch), lam_index=e.get("lam_index")))
        return out

    def has_profile(self, backend: str | None = None, precision: str | None = None, batch: int | None = None) -> bool:
        return any(v.latency_ms is not None for v in self.variants_for(backend, precision, batch))

    def select(self, max_latency_ms: float | None = None, min_robust_acc: float | None = None,
               min_clean_acc: float | None = None, objective: str = "clean", backend: str | None = None,
               precision: str | None = None, batch: int | None = None) -> Variant:
        variants = self.variants_for(backend, precision, batch)
        if max_latency_ms is not None and not self.has_profile(backend, precision, batch):
            raise OatError(f"no latency profile for this device ({self.key(backend, precision, batch)}); run "
                           f"`oatdeploy profile {self.folder} --backend {backend or self.backend}` first")
        return select(variants, max_latency_ms, min_robust_acc, min_clean_acc, objective)

    def pareto(self, backend: str | None = None, precision: str | None = None) -> list[Variant]:
        return pareto_front(self.variants_for(backend, precision))

    def sample_input(self, batch: int) -> np.ndarray:
        """Real test images saved at export time, tiled to the batch size (timings on real data)."""
        clean = self.manifest.get("verification", {}).get("clean")
        if clean:
            with np.load(self.folder / clean["path"]) as npz:
                x = npz["x"].astype(np.float32)
        else:
            x = np.random.default_rng(0).random((1, *self.input_shape), dtype=np.float32)
        return np.resize(x, (batch, *x.shape[1:]))

    def runner(self, variant: Variant, backend: str | None = None, **options: Any) -> Runner:
        return get_runner(backend or self.backend, self.folder / variant.path, **options)

    def profile(self, backend: str | None = None, batches: Iterable[int] = (1,), precision: str | None = None,
                progress: bool = False, **measure_opts: Any) -> list[dict[str, Any]]:
        """Time every variant at each batch size; save p50/p95 in the manifest under this device's key."""
        backend, precision = backend or self.backend, precision or self.precision
        if backend == "trt":
            require_tensorrt()
        rows: list[dict[str, Any]] = []
        runners: dict[str, Any] = {}
        todo = [(b, v) for b in batches for v in self.variants_for(backend, precision, b)]
        inputs = {b: self.sample_input(b) for b in batches}
        from tqdm import tqdm

        try:
            for batch, v in tqdm(todo, desc="profile", unit="variant", disable=not progress):
                if v.path not in runners:
                    runners[v.path] = self.runner(v, backend)
                stats = measure(runners[v.path], inputs[batch], v.lam_index, **measure_opts)
                key = self.key(backend, precision, batch)
                rows.append({"id": v.id, "key": key, "backend": backend, "batch": batch, "precision": precision,
                             **stats})
        finally:
            for r in runners.values():
                r.close()
        self.save_latency(rows)
        return rows

    def save_latency(self, rows: list[dict[str, Any]]) -> None:
        """Store measurements under their device keys, beside other devices' profiles."""
        def edit(v: dict[str, Any]) -> None:
            for r in rows:
                if r["id"] == v["id"]:
                    v.setdefault("latency", {})[r["key"]] = {
                        k: r[k] for k in ("backend", "batch", "precision", "p50_ms", "p95_ms", "runs")}

        self.manifest = update_variants(self.folder, edit)

    def switcher(self, backend: str | None = None, precision: str | None = None, **options: Any) -> Switcher:
        """Serve this deployment: every variant preloaded (or `max_loaded` of them), budget via **options."""
        from oatdeploy.runtime.switcher import Switcher

        if (backend or self.backend) == "trt":
            require_tensorrt()
        return Switcher(self, backend or self.backend, precision or self.precision, **options)


def tensorrt_version() -> str | None:
    """The TensorRT here, when its Python bindings are installed (engines are tied to it)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    import tensorrt

    return str(tensorrt.__version__)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise OatError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise OatError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def variant_by_id(variants: Sequence[Variant], vid: str) -> Variant:
    for v in variants:
        if v.id == vid:
            return v
    raise OatError(f"no variant {vid!r}; choose one of {', '.join(v.id for v in variants)}")
