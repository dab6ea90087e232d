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

import io
from pathlib import Path
from typing import Any

import numpy as np

from oatdeploy.atomic import PathLike
from oatdeploy.errors import ArtifactError, OatError
from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.deployment import Deployment
from oatdeploy.runtime.manifest import read_verified, update_variants
from oatdeploy.runtime.stats import wilson_interval

PRECISIONS = ("fp16", "int8")
BACKENDS = ("ort", "trt")


def accuracy(runner: Runner, x: np.ndarray, y: np.ndarray, lam_index: int | None, batch: int) -> float:
    correct = 0
    for i in range(0, len(x), batch):
        logits = runner.infer(x[i:i + batch], lam_index)
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


def load_npz(deploy_dir: Path, entry: dict[str, Any] | None, keys: tuple[str, str],
             what: str) -> tuple[np.ndarray, ...]:
    """Saved images and labels, hashed as read and parsed from those bytes (no pickles)."""
    if not entry:
        raise ArtifactError(f"{deploy_dir}/manifest.json records no {what}; re-export with `oatdeploy export`")
    data = read_verified(deploy_dir, entry["path"], entry["sha256"])
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return tuple(np.asarray(npz[k], dtype=np.float32 if k.startswith("x") else np.int64) for k in keys)


def verify_precision(deploy_dir: PathLike, precision: str, backend: str = "ort",
                     progress: bool = True) -> list[dict[str, Any]]:
    """Measure and record SA/RA at `precision`; returns one row per variant with the fp32 reference beside it."""
    if precision not in PRECISIONS:
        raise OatError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend not in BACKENDS:
        raise OatError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    deploy_dir = Path(deploy_dir)
    # Every variant's artifact up front (and hashed): a missing one is one error line, before any work.
    low_dep = Deployment.load(deploy_dir, backend=backend, precision=precision)
    ref_dep = Deployment(deploy_dir, low_dep.manifest, "ort", "fp32", power_state=low_dep.power_state)
    manifest = low_dep.manifest
    x_clean, y_clean = load_npz(deploy_dir, (manifest.get("verification") or {}).get("clean"), ("x", "y"),
                                "clean verification images")
    threat = manifest.get("threat_model") or {}
    attack = f"{threat.get('attack', 'pgd')}-{threat.get('steps', '?')} crafted on fp32 (transfer)"
    source = f"{backend}-{precision}"
    runners: dict[tuple[str, str], Runner] = {}
    rows: list[dict[str, Any]] = []
    from tqdm import tqdm

    def runner(dep: Deployment, v: Any) -> Runner:
        if (dep.backend, v.path) not in runners:
            options = {"device": "cpu"} if dep.backend == "ort" else {}
            runners[dep.backend, v.path] = dep.runner(v, **options)
        return runners[dep.backend, v.path]

    plan = list(zip(manifest["variants"], low_dep.variants_for(), ref_dep.variants_for()))
    try:
        for entry, low_v, ref_v in tqdm(plan, desc=f"verify ({source})", unit="variant", disable=not progress):
            x_adv, y_adv = load_npz(deploy_dir, entry.get("adv_examples"), ("x_adv", "y"),
                                    f"adversarial examples for {entry['id']}")
            li = entry.get("lam_index")
            low, ref = runner(low_dep, low_v), runner(ref_dep, ref_v)
            batch = low.spec.max_batch or 256
            sa, ra = accuracy(low, x_clean, y_clean, li, batch), accuracy(low, x_adv, y_adv, li, batch)
            row = {"id": entry["id"], "clean_acc": sa, "robust_acc": ra, "source": source,
                   "clean_ci95": list(wilson_interval(round(sa * len(x_clean)), len(x_clean))),
                   "robust_ci95": list(wilson_interval(round(ra * len(x_adv)), len(x_adv))),
                   "samples": len(x_clean), "attack": attack, "artifact": low_v.path,
                   "fp32": {"clean_acc": accuracy(ref, x_clean, y_clean, li, 256),
                            "robust_acc": accuracy(ref, x_adv, y_adv, li, 256), "source": "ort-fp32"}}
            rows.append(row)
    finally:
        for r in runners.values():
            r.close()
    record(deploy_dir, precision, rows)
    return rows


def record(deploy_dir: Path, precision: str, rows: list[dict[str, Any]]) -> None:
    """Write each variant's measured SA/RA under `precision_metrics[precision]`."""
    by_id = {r["id"]: r for r in rows}

    def edit(v: dict[str, Any]) -> None:
        r = by_id.get(v["id"])
        if r:
            v.setdefault("precision_metrics", {})[precision] = {
                k: r[k] for k in ("clean_acc", "robust_acc", "clean_ci95", "robust_ci95", "source", "samples", "attack",
                                  "fp32")}

    update_variants(deploy_dir, edit)


def format_table(rows: list[dict[str, Any]], precision: str) -> str:
    """fp32 vs `precision` SA/RA per variant, with the change in points."""
    head = (f"{'variant':<14} {'SA fp32':>8} {'SA ' + precision:>8} {'ΔSA':>6} "
            f"{'RA fp32':>8} {'RA ' + precision:>8} {'ΔRA':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        f = r["fp32"]
        lines.append(f"{r['id']:<14} {f['clean_acc']:>8.3f} {r['clean_acc']:>8.3f} "
                     f"{100 * (r['clean_acc'] - f['clean_acc']):>+6.1f} {f['robust_acc']:>8.3f} "
                     f"{r['robust_acc']:>8.3f} {100 * (r['robust_acc'] - f['robust_acc']):>+6.1f}")
    samples = rows[0]["samples"] if rows else 0
    lines.append(f"{samples} images; RA on {rows[0]['attack'] if rows else 'n/a'}; Δ in points; source "
                 f"{rows[0]['source'] if rows else 'n/a'}")
    return "\n".join(lines)
