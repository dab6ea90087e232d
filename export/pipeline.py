"""`oatdeploy export`: checkpoint → verified ONNX files, verification data and manifest.json.

Everything is built in a hidden folder beside the target and swapped in at the end, so a failed export
never touches an existing deployment.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from oatdeploy import data as datasets
from oatdeploy.attacks import PGDConfig, pgd_attack
from oatdeploy.checkpoint import load_supernet
from oatdeploy.devices import resolve_device, to_device
from oatdeploy.export import parity
from oatdeploy.export.cost import graph_cost
from oatdeploy.export.manifest import (
    OUTCOMES,
    file_entry,
    metrics_source,
    new_manifest,
    outcome_arrays,
    outcomes_entry,
    variant_entry,
    variant_metrics,
    write_manifest,
)
from oatdeploy.export.onnx_export import export_onnx
from oatdeploy.runtime.artifacts import BUILD_LOCK, MANAGED
from oatdeploy.runtime.atomic import atomic_save, sha256_file
from oatdeploy.runtime.checks import is_number
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.folder import LOCKNAME, locked, read_manifest
from oatdeploy.runtime.manifest import (
    FILENAME,
    MODES,
    FileRef,
    Manifest,
    Model,
    Source,
    ThreatModel,
    VariantEntry,
    variant_id,
)
from oatdeploy.runtime.replace import new_staging, recover, swap_in
from oatdeploy.supernet import Supernet

TEMPORARY = re.compile(r"^\..*\.(tmp|pending)$")  # atomic_path's and write_artifact's files of a killed write


def load_metrics(checkpoint: Path, checkpoint_sha: str, eval_json: str | Path | None) -> dict[str, Any] | None:
    """The run's eval.json when it belongs to this checkpoint (an explicit --eval-json must)."""
    path = Path(eval_json) if eval_json else checkpoint.with_name("eval.json")
    if not path.is_file():
        if eval_json:
            raise OatError(f"--eval-json {path} does not exist; run `oatdeploy eval` first")
        return None
    try:
        report = json.loads(path.read_text())
        sha, rows = report.get("checkpoint_sha256"), report["results"]
        flaw = report_flaw(report)
    except (ValueError, RecursionError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        flaw = "is not JSON holding an object with results"
    if flaw:
        if eval_json:
            raise OatError(f"{path} {flaw}: it is not an eval.json as `oatdeploy eval` writes it; re-run that")
        tqdm.write(f"warning: ignoring {path}: it {flaw}", file=sys.stderr)
        return None
    if sha != checkpoint_sha or not rows:
        if eval_json:
            raise OatError(f"{path} was computed for another checkpoint; re-run `oatdeploy eval {checkpoint}`")
        tqdm.write(f"warning: ignoring {path}: it was computed for another checkpoint", file=sys.stderr)
        return None
    return report


def report_flaw(report: dict[str, Any]) -> str | None:
    """What keeps an evaluation's structure from being read (its values are checked by the manifest's schema)."""
    attack = report.get("attack")
    if not isinstance(attack, dict) or not isinstance(attack.get("name"), str):
        return "has no attack object with a name"
    if isinstance(report.get("num_samples"), bool) or not isinstance(report.get("num_samples"), int):
        return "has no whole num_samples"
    rows = report.get("results")
    if not isinstance(rows, list):
        return "has no list of results"
    for i, row in enumerate(rows):
        missing = [k for k in ("lambda", "width", "clean_acc", "robust_acc")
                   if not isinstance(row, dict) or k not in row]
        if missing:
            return f"has results[{i}] without {', '.join(missing)}"
        if not all(is_number(row[k]) for k in ("lambda", "width")):
            return f"has results[{i}] whose lambda or width is not a number"
    return None


def save_npz(folder: Path, rel: str, **arrays: np.ndarray) -> FileRef:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npz" to it
            np.savez_compressed(f, **arrays)

    atomic_save(folder / rel, write)
    return file_entry(folder, rel)


def default_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp create owner-only entries; give the deployment the modes a plain copy would have."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def deployment_owned(old: Path) -> Callable[[str], bool]:
    """Which files of an existing deployment export or the device wrote: what its manifest names, the manifest,
    the locks, verify/ and the device's managed folders; without a readable manifest, also top-level graphs and
    calib.npz. Everything else (a user's info.md, notes, plots) is the user's."""
    try:
        named = {ref.path for _, ref in read_manifest(old).files()}
    except OatError:
        named = None
    fixed = {FILENAME, LOCKNAME, BUILD_LOCK, "calib.npz"}

    def owned(rel: str) -> bool:
        parts = PurePosixPath(rel).parts
        if rel in fixed or parts[0] in (*MANAGED, "verify") or TEMPORARY.match(parts[-1]):
            return True
        return rel in named if named is not None else len(parts) == 1 and rel.endswith(".onnx")

    return owned


def keep_user_files(old: Path, staging: Path) -> list[str]:
    """Link (or copy) into the new deployment every file of the old one that no deployment wrote; refuses, before
    anything is replaced, when the new deployment has a file of the same name."""
    owned = deployment_owned(old)
    theirs = [p for p in sorted(old.rglob("*")) if not p.is_dir() or p.is_symlink()]
    theirs = [p for p in theirs if not owned(p.relative_to(old).as_posix())]
    clash = [p.relative_to(old).as_posix() for p in theirs if os.path.lexists(staging / p.relative_to(old))]
    if clash:
        raise OatError(f"{old} holds {', '.join(clash)}, which the new export also writes; move "
                       f"{'them' if len(clash) > 1 else 'it'} out of the deployment folder, then export again")
    for p in theirs:
        target = staging / p.relative_to(old)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, target, follow_symlinks=False)
        except OSError:
            shutil.copy2(p, target, follow_symlinks=False)
    return [p.relative_to(old).as_posix() for p in theirs]


def install(staging: Path, out: Path) -> list[str]:
    """Swap the finished deployment in (`replace.swap_in`) under the deployment's lock, keeping the user's files;
    returns those kept. A concurrent export that creates `out` first is waited for, then replaced."""
    while True:
        if out.is_dir() and any(out.iterdir()):
            with locked(out):
                kept = keep_user_files(out, staging)
                swap_in(staging, out)
            return kept
        try:
            swap_in(staging, out)
            return []
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise


def check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / FILENAME).is_file())):
        raise OatError(f"{out} exists and is not an oatdeploy deployment; choose another --out or remove it")


def export_deployment(checkpoint: str | Path, out: str | Path, mode: str = "folded",
                      eval_json: str | Path | None = None, evaluate: bool = False, verify_samples: int = 256,
                      calib_samples: int = 512, adv_steps: int = 20, progress: bool = True, *,
                      tolerance: float | None = None, data_dir: str | None = None, device: str = "auto") -> Manifest:
    """Export every (λ, width) of a checkpoint into `out`; returns the manifest that was written.

    `tolerance` (max |Δlogit| under ONNX Runtime, default `parity.DEFAULT_TOLERANCE`, plus
    `parity.RELATIVE_TOLERANCE` × max |logit|), `data_dir` (default: the run's) and `device` (where the
    verification attack and `--evaluate` run; devices.resolve_device) are keyword-only extras.
    """
    if mode not in MODES:
        raise OatError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    checkpoint, out = Path(checkpoint), Path(out)
    dev = resolve_device(device)
    for line in recover(out):
        print(line, file=sys.stderr)
    check_target(out)
    sn = load_supernet(checkpoint)
    ckpt_sha = sha256_file(checkpoint)
    data_dir = datasets.data_dir_for(data_dir, sn.config)
    test = datasets.load_dataset(sn.config["dataset"], data_dir=data_dir, split="test", limit=verify_samples)
    calib = datasets.load_dataset(sn.config["dataset"], data_dir=data_dir, split="train", limit=calib_samples)
    report, origin = load_metrics(checkpoint, ckpt_sha, eval_json), str(eval_json or checkpoint.with_name("eval.json"))
    if report is None and evaluate:
        from oatdeploy.evaluate import run_evaluation

        report, origin = run_evaluation(checkpoint, data_dir=data_dir, progress=progress, device=device), "evaluate"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = new_staging(out)
    try:
        eps = float(sn.config["eps"])
        manifest = new_manifest(
            model=Model(list(sn.input_shape), sn.lambdas, sn.widths, sn.num_classes, sn.arch, sn.config["dataset"],
                        [0.0, 1.0], sn.dual_bn),
            threat_model=ThreatModel("linf", eps, report["attack"]["name"] if report else "pgd",
                                     report["attack"].get("steps") if report else adv_steps),
            source=Source(checkpoint.name, ckpt_sha),
            metrics=metrics_source(report, origin),
            calibration=save_npz(staging, "calib.npz", x=calib.x.numpy().astype(np.float32)),
            clean=save_npz(staging, "verify/clean.npz", x=test.x.numpy(), y=test.y.numpy()),
        )
        attack = PGDConfig(eps=eps, steps=adv_steps)
        tol = parity.DEFAULT_TOLERANCE if tolerance is None else tolerance
        manifest.variants = build_variants(sn, staging, mode, test, report, attack, tol, progress, dev)
        per_image = outcome_arrays(report, manifest.variants)
        if per_image and report is not None:
            manifest.outcomes = outcomes_entry(save_npz(staging, OUTCOMES, **per_image), int(report["num_samples"]))
        write_manifest(staging, manifest)
        default_permissions(staging)
        kept = install(staging, out)
        if kept:
            print(f"kept in {out} what the deployment did not write: {', '.join(kept)}", file=sys.stderr)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def build_variants(sn: Supernet, folder: Path, mode: str, test: datasets.ArrayDataset, report: dict[str, Any] | None,
                   attack: PGDConfig, tolerance: float, progress: bool,
                   device: torch.device | None = None) -> list[VariantEntry]:
    """Export, verify under ONNX Runtime, cost and attack every (λ, width); one entry each.

    `sn` stays on the CPU: folding, ONNX export and the parity reference are exact fp32 there (a GPU's TF32
    convolutions would miss the 1e-3 tolerance) and cost one forward pass; the verification attack, PGD on
    every variant, runs on `device`.
    """
    device = device or torch.device("cpu")
    x_np, y_np = test.x.numpy(), test.y.numpy()
    x_dev, y_dev = to_device(test.x, device), to_device(test.y, device)
    pairs = [(lam, w) for w in sn.widths for lam in sn.lambdas]
    sessions: dict[float, Any] = {}
    gen = torch.Generator().manual_seed(0)
    variants = []
    for lam, w in tqdm(pairs, desc=f"export ({mode})", unit="variant", disable=not progress):
        vid = variant_id(lam, w)
        folded = sn.subnet(lam, w)
        if mode == "folded":
            rel, lam_index = f"{vid}.onnx", None
            export_onnx(folded, folder / rel, sn.input_shape)
            session = parity.cpu_session(folder / rel)
        else:
            rel, lam_index = f"w{w:g}.onnx", sn.lam_index(lam)
            if w not in sessions:
                export_onnx(sn.shared_subnet(w), folder / rel, sn.input_shape, shared=True)
                sessions[w] = parity.cpu_session(folder / rel)
            session = sessions[w]
        reference = sn.predict(test.x, lam, w).numpy()
        check = parity.check_parity(session, x_np, reference, f"{rel} ({vid})", lam_index, tolerance)
        attacked = folded if device.type == "cpu" else copy.deepcopy(folded).to(device)
        x_adv = pgd_attack(attacked, x_dev, y_dev, attack, generator=gen).cpu().numpy()
        save_npz(folder, f"verify/{vid}.npz", x_adv=x_adv, y=y_np)
        variants.append(variant_entry(folder, lam, w, mode, rel, graph_cost(folder / rel, sn.input_shape),
                                      variant_metrics(report, lam, w), check, f"verify/{vid}.npz", lam_index))
    return variants
