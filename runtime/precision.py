"""`oatdeploy verify`: clean and robust accuracy of what a reduced precision actually runs (the precision check).

SA on verify/clean.npz and RA on each variant's verify/<id>.npz (PGD examples crafted at export on the
folded fp32 variant, so RA here is robustness to those transferred examples, not a fresh white-box
attack on the quantized model). Runs the ORT int8/fp16 model or this device's TensorRT engine, and the
fp32 ONNX on the same images as the reference, every one built from bytes hashed as read; writes
`precision_metrics[precision]` per variant, with 95 % intervals, so `select` ranks variants by the numbers of
what runs.
Torch-free, Python 3.8+.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from oatdeploy.runtime.arrays import npz_arrays
from oatdeploy.runtime.atomic import PathLike
from oatdeploy.runtime.backends import BACKENDS
from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.deployment import Deployment
from oatdeploy.runtime.errors import ArtifactError, OatError
from oatdeploy.runtime.folder import read_verified, update_variants
from oatdeploy.runtime.manifest import REDUCED, FileRef, Fp32Reference, Manifest, PrecisionMetrics, VariantEntry
from oatdeploy.runtime.stats import wilson_interval


def accuracy(runner: Runner, x: np.ndarray, y: np.ndarray, lam_index: int | None, batch: int) -> float:
    correct = 0
    for i in range(0, len(x), batch):
        logits = runner.infer(x[i:i + batch], lam_index)
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


def load_npz(deploy_dir: Path, entry: FileRef | None, keys: tuple[str, str], what: str) -> tuple[np.ndarray, ...]:
    """Saved images and labels, hashed as read and parsed from those bytes (no pickles)."""
    if not entry:
        raise ArtifactError(f"{deploy_dir}/manifest.json records no {what}; re-export with `oatdeploy export`")
    data = read_verified(deploy_dir, entry.path, entry.sha256, entry.size)
    arrays = npz_arrays(data, f"{deploy_dir}/{entry.path}", keys, "re-export the deployment")
    return tuple(arrays[k] for k in keys)


def verify_precision(deploy_dir: PathLike, precision: str, backend: str = "ort",
                     progress: bool = True) -> list[tuple[str, PrecisionMetrics]]:
    """Measure and record SA/RA at `precision`; returns each variant's id and its measurement (the fp32 reference
    inside)."""
    if precision not in REDUCED:
        raise OatError(f"--precision must be one of {', '.join(REDUCED)}, got {precision!r}")
    if backend not in BACKENDS:
        raise OatError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    deploy_dir = Path(deploy_dir)
    # Every variant's artifact up front (and hashed): a missing one is one error line, before any work.
    low_dep = Deployment.load(deploy_dir, backend=backend, precision=precision)
    ref_dep = Deployment(deploy_dir, low_dep.manifest, "ort", "fp32", power_state=low_dep.power_state)
    manifest = low_dep.manifest
    x_clean, y_clean = load_npz(deploy_dir, manifest.verification.get("clean"), ("x", "y"),
                                "clean verification images")
    threat = manifest.threat_model
    attack = f"{threat.attack or 'pgd'}-{threat.steps if threat.steps is not None else '?'} crafted on fp32 (transfer)"
    source = f"{backend}-{precision}"
    runners: dict[tuple[str, str], Runner] = {}
    rows: list[tuple[str, PrecisionMetrics]] = []
    from tqdm import tqdm

    def runner(dep: Deployment, v: Any) -> Runner:
        if (dep.backend, v.path) not in runners:
            options = {"device": "cpu"} if dep.backend == "ort" else {}
            runners[dep.backend, v.path] = dep.runner(v, **options)
        return runners[dep.backend, v.path]

    plan = list(zip(manifest.variants, low_dep.variants_for(), ref_dep.variants_for()))
    try:
        for entry, low_v, ref_v in tqdm(plan, desc=f"verify ({source})", unit="variant", disable=not progress):
            x_adv, y_adv = load_npz(deploy_dir, entry.adv_examples, ("x_adv", "y"),
                                    f"adversarial examples for {entry.id}")
            li = entry.lam_index
            low, ref = runner(low_dep, low_v), runner(ref_dep, ref_v)
            batch = low.spec.max_batch or 256
            sa, ra = accuracy(low, x_clean, y_clean, li, batch), accuracy(low, x_adv, y_adv, li, batch)
            fp32 = Fp32Reference(accuracy(ref, x_clean, y_clean, li, 256), accuracy(ref, x_adv, y_adv, li, 256),
                                 "ort-fp32")
            rows.append((entry.id, PrecisionMetrics(
                sa, ra, list(wilson_interval(round(sa * len(x_clean)), len(x_clean))),
                list(wilson_interval(round(ra * len(x_adv)), len(x_adv))), len(x_clean), attack, source=source,
                fp32=fp32)))
    finally:
        for r in runners.values():
            r.close()
    record(deploy_dir, manifest, precision, rows)
    return rows


def record(deploy_dir: Path, expect: Manifest, precision: str, rows: list[tuple[str, PrecisionMetrics]]) -> None:
    """Write each variant's measured SA/RA under `precision_metrics[precision]`."""
    by_id = dict(rows)

    def edit(v: VariantEntry) -> None:
        if v.id in by_id:
            v.precision_metrics[precision] = by_id[v.id]

    update_variants(deploy_dir, edit, expect)


def format_table(rows: list[tuple[str, PrecisionMetrics]], precision: str) -> str:
    """fp32 vs `precision` SA/RA per variant, with the change in points."""
    head = (f"{'variant':<14} {'SA fp32':>8} {'SA ' + precision:>8} {'ΔSA':>6} "
            f"{'RA fp32':>8} {'RA ' + precision:>8} {'ΔRA':>6}")
    lines = [head, "-" * len(head)]
    for vid, m in rows:
        f = m.fp32 or Fp32Reference()
        sa, ra, fsa, fra = (float("nan") if v is None else v for v in (m.clean_acc, m.robust_acc, f.clean_acc,
                                                                       f.robust_acc))
        lines.append(f"{vid:<14} {fsa:>8.3f} {sa:>8.3f} {100 * (sa - fsa):>+6.1f} {fra:>8.3f} {ra:>8.3f} "
                     f"{100 * (ra - fra):>+6.1f}")
    first = rows[0][1] if rows else PrecisionMetrics(None, None)
    lines.append(f"{first.samples or 0} images; RA on {first.attack or 'n/a'}; Δ in points; source "
                 f"{first.source or 'n/a'}")
    return "\n".join(lines)
