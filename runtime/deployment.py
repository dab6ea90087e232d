"""A deployment folder on the device: its manifest, its variants as this device sees them, profiling."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from oatdeploy.runtime.backends import BACKENDS, get_runner
from oatdeploy.runtime.device import device_name, gpu_name, latency_key
from oatdeploy.runtime.manifest import load_manifest, save_manifest
from oatdeploy.runtime.profile import measure
from oatdeploy.runtime.select import Variant, pareto_front, select

from oatdeploy.errors import ArtifactError, OatError

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
        return cls(folder, load_manifest(folder, verify=verify), backend, precision, batch)

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

    def artifact(self, entry: dict[str, Any], backend: str, precision: str) -> str:
        """The file that serves a variant: its ONNX, its quantized ONNX, or this precision's engine."""
        if backend == "trt":
            for engine in entry.get("engines") or []:
                if engine["precision"] == precision:
                    return engine["path"]
            raise ArtifactError(f"{entry['id']} has no {precision} TensorRT engine; run `oatdeploy build-engines "
                                f"{self.folder} --precision {precision}` on this device")
        if precision == "fp32":
            return entry["onnx"]
        quantized = (entry.get("quantized") or {}).get(precision)
        if quantized is None:
            raise ArtifactError(f"{entry['id']} has no {precision} ONNX model; run `oatdeploy quantize "
                                f"{self.folder} --precision {precision}`")
        return quantized["onnx"]

    def variants_for(self, backend: str | None = None, precision: str | None = None,
                     batch: int | None = None) -> list[Variant]:
        """Variants with the accuracy of what this precision runs and the latency profiled on this device."""
        backend, precision = backend or self.backend, precision or self.precision
        key = self.key(backend, precision, batch)
        out = []
        for e in self.manifest["variants"]:
            metrics = (e.get("precision_metrics") or {}).get(precision) if precision != "fp32" else None
            metrics = metrics or e["metrics"]
            latency = (e.get("latency") or {}).get(key)
            out.append(Variant(id=e["id"], lam=e["lambda"], width=e["width"], clean_acc=metrics.get("clean_acc"),
                               robust_acc=metrics.get("robust_acc"),
                               latency_ms=latency["p50_ms"] if latency else None,
                               artifact=self.artifact(e, backend, precision), lam_index=e.get("lam_index")))
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

    def runner(self, variant: Variant, backend: str | None = None, **options: Any) -> Any:
        return get_runner(backend or self.backend, self.folder / variant.artifact, **options)

    def profile(self, backend: str | None = None, batches: Iterable[int] = (1,), precision: str | None = None,
                progress: bool = False, **measure_opts: Any) -> list[dict[str, Any]]:
        """Time every variant at each batch size; save p50/p95 in the manifest under this device's key."""
        backend, precision = backend or self.backend, precision or self.precision
        rows = []
        runners: dict[str, Any] = {}
        todo = [(b, v) for b in batches for v in self.variants_for(backend, precision)]
        from tqdm import tqdm

        try:
            for batch, v in tqdm(todo, desc="profile", unit="variant", disable=not progress):
                if v.artifact not in runners:
                    runners[v.artifact] = self.runner(v, backend)
                stats = measure(runners[v.artifact], self.sample_input(batch), v.lam_index, **measure_opts)
                key = self.key(backend, precision, batch)
                entry = next(e for e in self.manifest["variants"] if e["id"] == v.id)
                entry.setdefault("latency", {})[key] = {"backend": backend, "batch": batch, "precision": precision,
                                                        **stats}
                rows.append({"id": v.id, "key": key, **stats})
        finally:
            for r in runners.values():
                r.close()
        save_manifest(self.folder, self.manifest)
        return rows

    def switcher(self, backend: str | None = None, precision: str | None = None, **options: Any) -> Any:
        from oatdeploy.runtime.switcher import Switcher

        return Switcher(self, backend or self.backend, precision or self.precision, **options)


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
