"""A deployment folder on the device: its manifest, its variants as this device sees them, profiling.

`Deployment.load` checks what it will serve and nothing else: the fp32 ONNX graphs for ONNX Runtime fp32,
the quantized graphs for ORT fp16/int8, this device's engines for TensorRT. An old engine for another GPU,
a missing calib.npz or a stale quantized model of another precision does not stop an fp32 service.
Runners are built from bytes hashed as they are read (`folder.read_verified`), also when the switcher
reloads an evicted variant. Python 3.8+, no torch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from oatdeploy.runtime import power
from oatdeploy.runtime import profile as profiling
from oatdeploy.runtime.arrays import npz_arrays
from oatdeploy.runtime.atomic import PathLike
from oatdeploy.runtime.backends import BACKENDS, get_runner, require_tensorrt
from oatdeploy.runtime.backends.base import check_batch_size
from oatdeploy.runtime.device import device_name, latency_key, without_power_mode
from oatdeploy.runtime.errors import ArtifactError, OatError, OatWarning
from oatdeploy.runtime.folder import check_file, read_manifest, read_verified, update_variants
from oatdeploy.runtime.manifest import (
    OUTCOME_KINDS,
    PRECISIONS,
    Engine,
    FileRef,
    Latency,
    Manifest,
    VariantEntry,
    outcome_array,
)
from oatdeploy.runtime.selection import Budget, Choice, PerImage, Variant, choose, pareto_front

if TYPE_CHECKING:
    from oatdeploy.runtime.backends.base import Runner
    from oatdeploy.runtime.switcher import Switcher

POWER_POLICIES = ("warn", "refuse")


class Deployment:
    """What `oatdeploy export` wrote, as this device serves it, with this device's latency profile.

    `power_policy` says what to do when this Jetson's power mode or clock state differs from the one a
    profile was taken in: 'warn' (use that profile, with a warning) or 'refuse' (raise). `power_state` is
    read from this machine unless given (tests pass a state read from a fake tree).
    """

    def __init__(self, folder: PathLike, manifest: Manifest, backend: str = "ort", precision: str = "fp32",
                 batch: int = 1, power_policy: str = "warn", power_state: dict[str, Any] | None = None) -> None:
        self.folder, self.manifest = Path(folder), manifest
        self.backend, self.precision, self.batch = check_backend(backend), check_precision(precision), batch
        if power_policy not in POWER_POLICIES:
            raise OatError(f"power policy must be one of {', '.join(POWER_POLICIES)}, got {power_policy!r}")
        self.power_policy = power_policy
        self.power_state = power_state if power_state is not None else power.power_state()
        self._here: dict[str, str] | None = None
        self._chosen: dict[tuple, Engine] = {}
        self._outcomes: dict[str, dict[str, PerImage]] = {}

    @classmethod
    def load(cls, folder: PathLike, backend: str = "ort", precision: str = "fp32", batch: int = 1,
             check_sha256: bool = True, power_policy: str = "warn",
             power_state: dict[str, Any] | None = None) -> Deployment:
        """Read the manifest and check every artifact this backend and precision will serve (and only those)."""
        deployment = cls(folder, read_manifest(folder), backend, precision, batch, power_policy, power_state)
        if backend == "trt":
            require_tensorrt()
        for entry in deployment.manifest.variants:
            served = deployment.artifact(entry, backend, precision, batch, check_sha256)
            if check_sha256 and backend == "ort":
                check_file(deployment.folder, served.path, served.sha256)  # engines are checked when chosen
        return deployment

    @property
    def input_shape(self) -> tuple:
        return tuple(self.manifest.model.input_shape)

    @property
    def variants(self) -> list[Variant]:
        return self.variants_for()

    def here(self) -> dict[str, str]:
        """TensorRT version, GPU and compute capability of this machine (what engines are tied to)."""
        if self._here is None:
            from oatdeploy.runtime.engines import current_device

            self._here = current_device()
        return self._here

    def device(self, backend: str | None = None) -> str:
        """The device name latencies are stored under for a backend here; on a Jetson, with its power mode."""
        backend = backend or self.backend
        mode = (self.power_state or {}).get("mode")
        if backend == "trt":
            return device_name(True, mode)
        from oatdeploy.runtime.backends.ort import cuda_usable

        return device_name(cuda_usable(), mode)

    def key(self, backend: str | None = None, precision: str | None = None, batch: int | None = None) -> str:
        return latency_key(self.device(backend), backend or self.backend, precision or self.precision,
                           batch or self.batch)

    def artifact(self, entry: VariantEntry, backend: str, precision: str, batch: int | None = None,
                 check_sha256: bool = True) -> FileRef:
        """The file that serves a variant: its ONNX, its quantized ONNX, or this device's engine."""
        if backend == "trt":
            from oatdeploy.runtime.engines import choose_engine

            key = (entry.id, precision, batch or self.batch)
            if key not in self._chosen:  # chosen once (and hashed then), so every listing serves the same engine
                self._chosen[key] = choose_engine(self.folder, entry, precision, key[2], self.here(), check_sha256)
            engine = self._chosen[key]
            return FileRef(engine.path, engine.sha256)
        if precision == "fp32":
            return FileRef(entry.onnx, entry.sha256)
        quantized = entry.quantized.get(precision)
        if quantized is None:
            raise ArtifactError(f"{entry.id} has no {precision} ONNX model; run `oatdeploy quantize {self.folder} "
                                f"--precision {precision}` first")
        return FileRef(quantized.onnx, quantized.sha256)

    def latency_entry(self, entry: VariantEntry, key: str) -> tuple[Latency | None, list[str]]:
        """(this key's profile, else the same device's profile in another power mode; what differs from now)."""
        if key in entry.latency:
            found = entry.latency[key]
            return found, power.differences(found.power, self.power_state)
        others = sorted(k for k in entry.latency if without_power_mode(k) == without_power_mode(key))
        if not others:
            return None, []
        found = entry.latency[others[0]]
        return found, power.differences(found.power, self.power_state) or [
            f"profiled as {others[0].split('|')[0]!r}, this device is {key.split('|')[0]!r}"]

    def per_image(self, precision: str) -> dict[str, PerImage]:
        """Each variant's per-image outcomes for the SA/RA measured in `precision` (read once, sha256-checked);
        empty when the deployment records none (exported before they were kept)."""
        if precision not in self._outcomes:
            ref = self.manifest.outcomes.get(precision)
            found: dict[str, PerImage] = {}
            if ref is not None:
                data = read_verified(self.folder, ref.path, ref.sha256)
                with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                    for e in self.manifest.variants:
                        names = [outcome_array(e.id, kind) for kind in OUTCOME_KINDS]
                        if all(n in npz.files for n in names):
                            clean, robust = (int.from_bytes(npz[n].astype(np.uint8).tobytes(), "big") for n in names)
                            found[e.id] = PerImage(f"{precision}:{ref.sha256}", ref.samples, clean, robust)
            self._outcomes[precision] = found
        return self._outcomes[precision]

    def variants_for(self, backend: str | None = None, precision: str | None = None,
                     batch: int | None = None, check_sha256: bool = False) -> list[Variant]:
        """Variants with the accuracy of what this precision runs and the latency profiled on this device.

        A profile taken in another power mode or clock state is used with a warning, or refused under
        power_policy='refuse'.
        """
        backend, precision = backend or self.backend, precision or self.precision
        key = self.key(backend, precision, batch)
        out, reasons = [], set()
        for e in self.manifest.variants:
            metrics, measured_in = e.accuracy(precision)
            latency, why = self.latency_entry(e, key)
            reasons.update(why)
            served = self.artifact(e, backend, precision, batch, check_sha256)
            out.append(Variant(id=e.id, lam=e.lam, width=e.width, clean_acc=metrics.clean_acc,
                               robust_acc=metrics.robust_acc, latency_ms=latency.p50_ms if latency else None,
                               path=served.path, lam_index=e.lam_index, sha256=served.sha256,
                               clean_ci95=metrics.interval("clean"), robust_ci95=metrics.interval("robust"),
                               latency_spread_ms=latency.spread if latency else None,
                               precision=precision, accuracy_precision=measured_in,
                               outcomes=self.per_image(measured_in).get(e.id)))
        if reasons:
            message = (f"the latency profile was taken under other conditions ({'; '.join(sorted(reasons))}); "
                       f"re-run `{self.profile_command(backend, precision, batch)}` in this mode")
            if self.power_policy == "refuse":
                raise OatError(message)
            warnings.warn(message, OatWarning, stacklevel=2)
        return out

    def profile_command(self, backend: str | None = None, precision: str | None = None,
                        batch: int | None = None) -> str:
        """The exact `oatdeploy profile` command that records the profile `select` looks up for these settings."""
        precision, batch = precision or self.precision, batch or self.batch
        return (f"oatdeploy profile {self.folder} --backend {backend or self.backend}"
                + (f" --precision {precision}" if precision != "fp32" else "")
                + (f" --batch-size {batch}" if batch != 1 else ""))

    def has_profile(self, backend: str | None = None, precision: str | None = None,
                    batch: int | None = None) -> bool:
        return any(v.latency_ms is not None for v in self.variants_for(backend, precision, batch))

    def choose(self, budget: Budget | None = None, backend: str | None = None, precision: str | None = None,
               batch: int | None = None, **limits: Any) -> Choice:
        """The budget's variant and why (`selection.Choice`), noting which precision its SA/RA were measured in.

        The budget is a `Budget`, or its fields as keywords (`max_latency_ms=4.0, min_robust_acc=0.5`).
        """
        budget = Budget.of(budget, **limits)
        backend, precision = backend or self.backend, precision or self.precision
        variants = self.variants_for(backend, precision, batch)
        if budget.max_latency_ms is not None and all(v.latency_ms is None for v in variants):
            raise OatError(f"no latency profile for this device ({self.key(backend, precision, batch)}); run "
                           f"`{self.profile_command(backend, precision, batch)}` first")
        choice = choose(variants, budget)
        return replace(choice, notes=(self.accuracy_note(choice.variant, backend),))

    def select(self, budget: Budget | None = None, backend: str | None = None, precision: str | None = None,
               batch: int | None = None, **limits: Any) -> Variant:
        """The budget's variant (see `choose` for why it is that one)."""
        return self.choose(budget, backend, precision, batch, **limits).variant

    def accuracy_note(self, v: Variant, backend: str) -> str:
        """Which precision a variant's SA/RA are of, where they come from, and how to get the served one's."""
        entry = self.manifest.variant(v.id)
        if v.accuracy_precision == v.precision and v.precision != "fp32":
            m = entry.precision_metrics[v.precision]
            return (f"SA/RA: {v.precision}, as `oatdeploy verify` measured what runs ({m.source}, "
                    f"{m.samples} images; RA on examples crafted on fp32)")
        m = entry.metrics
        source = f"{m.attack or 'attack n/a'} on {m.samples} images" if m.samples else "n/a"
        if v.precision == "fp32":
            return f"SA/RA: fp32 ({source})"
        return (f"SA/RA: fp32 numbers ({source}), not measured in {v.precision}; "
                f"`oatdeploy verify {self.folder} --precision {v.precision} --backend {backend}` measures them")

    def pareto(self, backend: str | None = None, precision: str | None = None) -> list[Variant]:
        return pareto_front(self.variants_for(backend, precision))

    def sample_input(self, batch: int) -> np.ndarray:
        """Real test images saved at export time, tiled to the batch size (timings on real data)."""
        check_batch_size(batch, tuple(self.input_shape), "a variant")
        clean = self.manifest.verification.get("clean")
        if clean:
            data = read_verified(self.folder, clean.path, clean.sha256, clean.size)
            x = npz_arrays(data, f"{self.folder}/{clean.path}", ["x"], "re-export the deployment")["x"]
        else:
            x = np.random.default_rng(0).random((1, *self.input_shape), dtype=np.float32)
        return np.resize(x, (batch, *x.shape[1:]))

    def runner(self, variant: Variant, backend: str | None = None, **options: Any) -> Runner:
        """A runner for `variant`, built from its artifact's bytes as hashed now (a swapped file is refused)."""
        backend = backend or self.backend
        if variant.sha256 is None:
            raise ArtifactError(f"{variant.id} has no recorded sha256; re-export the deployment")
        data = read_verified(self.folder, variant.path, variant.sha256)
        if variant.lam_index is not None:
            options.setdefault("lam_count", len(self.manifest.model.lambdas))
        return get_runner(backend, data, variant.path, variant.precision, **options)

    def profile(self, backend: str | None = None, batches: Iterable[int] = (1,), precision: str | None = None,
                progress: bool = False, rounds: int = profiling.ROUNDS,
                **measure_opts: Any) -> list[profiling.Measured]:
        """Time every variant at each batch size, round-robin over `rounds` rounds (runtime/profile.py); save
        p50/p95, each round's median (and the power state) under this device's key; warn when it is noisy."""
        backend, precision = backend or self.backend, precision or self.precision
        if backend == "trt":
            require_tensorrt()
        batches = list(batches)
        todo = [(b, v) for b in batches for v in self.variants_for(backend, precision, b)]
        inputs = {b: self.sample_input(b) for b in batches}
        runners: dict[str, Any] = {}
        try:
            for _, v in todo:
                if v.path not in runners:
                    runners[v.path] = self.runner(v, backend)
            jobs = [(runners[v.path], inputs[b], v.lam_index) for b, v in todo]
            stats = profiling.interleaved(jobs, rounds=rounds, progress=progress, **measure_opts)
        finally:
            for r in runners.values():
                r.close()
        rows = [profiling.Measured(v.id, self.key(backend, precision, b),
                                   replace(s, backend=backend, batch=b, precision=precision))
                for (b, v), s in zip(todo, stats)]
        self.save_latency(rows)
        warning = profiling.noisy(rows)
        if warning:
            warnings.warn(warning, OatWarning, stacklevel=2)
        return rows

    def save_latency(self, rows: list[profiling.Measured]) -> None:
        """Store measurements (and the power state) under their keys, beside other devices' profiles."""
        by_id: dict[str, list[profiling.Measured]] = {}
        for r in rows:
            by_id.setdefault(r.id, []).append(r)

        def edit(v: VariantEntry) -> None:
            for r in by_id.get(v.id, []):
                v.latency[r.key] = replace(r.latency, power=self.power_state)

        self.manifest = update_variants(self.folder, edit, self.manifest)

    def switcher(self, backend: str | None = None, precision: str | None = None, budget: Budget | None = None,
                 batch: int | None = None, max_loaded: int | None = None, window: int = 50, history: int = 0,
                 runner_options: dict[str, Any] | None = None, **limits: Any) -> Switcher:
        """Serve this deployment: every variant preloaded (or `max_loaded` of them), under `budget` (a `Budget`,
        or its fields as keywords); `runner_options` go to each runner (`{"threads": 2}`, `{"contexts": 1}`)."""
        from oatdeploy.runtime.switcher import Switcher

        backend, precision = backend or self.backend, precision or self.precision
        if backend == "trt":
            require_tensorrt()
        options = runner_options or {}
        return Switcher(self.variants_for(backend, precision, batch), lambda v: self.runner(v, backend, **options),
                        Budget.of(budget, **limits), max_loaded=max_loaded, window=window, history=history)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise OatError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise OatError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision
