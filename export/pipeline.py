"""`oatdeploy export`: checkpoint → verified ONNX files, verification data and manifest.json.

Everything is built in a hidden folder beside the target and swapped in at the end, so a failed export
never touches an existing deployment.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from oatdeploy.export.cost import graph_cost
from oatdeploy.export.onnx_export import export_onnx
from oatdeploy.export.verify import DEFAULT_TOLERANCE, cpu_session, verify_graph
from oatdeploy.runtime.manifest import FILENAME, FORMAT, VERSION, save_manifest
from tqdm import tqdm

from oatdeploy import data as datasets
from oatdeploy.atomic import sha256_file
from oatdeploy.attacks import PGDConfig, pgd_attack
from oatdeploy.checkpoint import load_supernet
from oatdeploy.errors import OatError
from oatdeploy.supernet import Supernet

MODES = ("folded", "shared")


def variant_id(lam: float, width: float) -> str:
    return f"lam{lam:g}-w{width:g}"


def load_metrics(checkpoint: Path, checkpoint_sha: str, eval_json: str | Path | None) -> dict[str, Any] | None:
    """The run's eval.json when it belongs to this checkpoint (an explicit --eval-json must)."""
    path = Path(eval_json) if eval_json else checkpoint.with_name("eval.json")
    if not path.is_file():
        if eval_json:
            raise OatError(f"--eval-json {path} does not exist; run `oatdeploy eval` first")
        return None
    report = json.loads(path.read_text())
    if report.get("checkpoint_sha256") != checkpoint_sha:
        if eval_json:
            raise OatError(f"{path} was computed for another checkpoint; re-run `oatdeploy eval {checkpoint}`")
        tqdm.write(f"note: ignoring {path}: it was computed for another checkpoint")
        return None
    return report


def save_npz(path: Path, **arrays: np.ndarray) -> dict[str, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return {"sha256": sha256_file(path)}


def swap_in(staging: Path, out: Path) -> None:
    """Replace `out` by `staging` with two renames; the old deployment is deleted only afterwards."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / FILENAME).is_file())):
        raise OatError(f"{out} exists and is not an oatdeploy deployment; choose another --out or remove it")


def export_deployment(checkpoint: str | Path, out: str | Path, mode: str = "folded",
                      eval_json: str | Path | None = None, evaluate: bool = False, verify_samples: int = 256,
                      calib_samples: int = 512, adv_steps: int = 20, tolerance: float = DEFAULT_TOLERANCE,
                      data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Export every (λ, width) of a checkpoint; returns the manifest that was written."""
    if mode not in MODES:
        raise OatError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    checkpoint, out = Path(checkpoint), Path(out)
    check_target(out)
    sn = load_supernet(checkpoint)
    ckpt_sha = sha256_file(checkpoint)
    cfg = sn.config
    data_dir = data_dir or cfg.get("data_dir")
    test = datasets.load_dataset(cfg["dataset"], data_dir=data_dir, split="test", limit=verify_samples)
    calib = datasets.load_dataset(cfg["dataset"], data_dir=data_dir, split="train", limit=calib_samples)
    report = load_metrics(checkpoint, ckpt_sha, eval_json)
    if report is None and evaluate:
        from oatdeploy.evaluate import run_evaluation

        report = run_evaluation(checkpoint, data_dir=data_dir, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        manifest = build(sn, staging, mode, test, calib, report, adv_steps, tolerance, progress)
        manifest["source"] = {"checkpoint": checkpoint.name, "checkpoint_sha256": ckpt_sha}
        save_manifest(staging, manifest)
        swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def build(sn: Supernet, folder: Path, mode: str, test: datasets.ArrayDataset, calib: datasets.ArrayDataset,
          report: dict[str, Any] | None, adv_steps: int, tolerance: float, progress: bool) -> dict[str, Any]:
    eps = float(sn.config["eps"])
    attack = PGDConfig(eps=eps, steps=adv_steps)
    rows = {(r["lambda"], r["width"]): r for r in (report or {}).get("results", [])}
    attack_name = f"{report['attack']['name']}-{report['attack']['steps']}" if report else None
    x_np = test.x.numpy()
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {"arch": sn.arch, "num_classes": sn.num_classes, "input_shape": list(sn.input_shape),
                  "lambdas": sn.lambdas, "widths": sn.widths, "input_range": [0.0, 1.0],
                  "dataset": sn.config["dataset"], "dual_bn": sn.dual_bn},
        "threat_model": {"norm": "linf", "eps": eps, "attack": report["attack"]["name"] if report else "pgd",
                         "steps": report["attack"]["steps"] if report else adv_steps},
        "calibration": {"path": "calib.npz",
                        **save_npz(folder / "calib.npz", x=calib.x.numpy().astype(np.float32))},
        "verification": {"clean": {"path": "verify/clean.npz",
                                   **save_npz(folder / "verify/clean.npz", x=x_np, y=test.y.numpy())}},
        "variants": [],
    }
    pairs = [(lam, w) for w in sn.widths for lam in sn.lambdas]
    sessions: dict[float, Any] = {}
    gen = torch.Generator().manual_seed(0)
    for lam, w in tqdm(pairs, desc=f"export ({mode})", unit="variant", disable=not progress):
        vid, li = variant_id(lam, w), sn.lam_index(lam)
        folded = sn.subnet(lam, w)
        if mode == "folded":
            rel = f"{vid}.onnx"
            export_onnx(folded, folder / rel, sn.input_shape)
            session, lam_index = cpu_session(folder / rel), None
        else:
            rel = f"w{w:g}.onnx"
            if w not in sessions:
                export_onnx(sn.shared_subnet(w), folder / rel, sn.input_shape, shared=True)
                sessions[w] = cpu_session(folder / rel)
            session, lam_index = sessions[w], li
        reference = sn.predict(test.x, lam, w).numpy()
        check = verify_graph(session, x_np, reference, f"{rel} ({vid})", lam_index, tolerance)
        params, flops = graph_cost(folder / rel, sn.input_shape)
        x_adv = pgd_attack(folded, test.x, test.y, attack, generator=gen)
        row = rows.get((lam, w))
        variant: dict[str, Any] = {
            "id": vid, "lambda": lam, "width": w, "mode": mode, "onnx": rel, "sha256": sha256_file(folder / rel),
            "params": params, "flops": flops,
            "metrics": {"clean_acc": row["clean_acc"] if row else None,
                        "robust_acc": row["robust_acc"] if row else None, "attack": attack_name,
                        "samples": report["num_samples"] if report else 0},
            "verification": check,
            "adv_examples": {"path": f"verify/{vid}.npz",
                             **save_npz(folder / f"verify/{vid}.npz", x_adv=x_adv.numpy(), y=test.y.numpy())},
            "engines": [], "latency": {},
        }
        if lam_index is not None:
            variant["lam_index"] = lam_index
        manifest["variants"].append(variant)
    return manifest
