"""manifest.json version 1 as export first writes it: the dicts built in one place and checked.

Reading, updating and writing belong to `oatdeploy.runtime.manifest` (the one owner); this module only
builds a new deployment's manifest and hands it to that writer.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from oatdeploy.atomic import sha256_file
from oatdeploy.eval_files import attack_label
from oatdeploy.runtime import manifest as owner

REQUIRED = ("format", "version", "model", "threat_model", "source", "variants")
REQUIRED_VARIANT = ("id", "lambda", "width", "mode", "onnx", "sha256", "params", "flops", "metrics", "engines",
                    "latency")


def variant_id(lam: float, width: float) -> str:
    """`lam0.4-w0.5`: the id the manifest, the files and the CLI all use."""
    return f"lam{lam:g}-w{width:g}"


def file_entry(folder: Path, rel: str) -> dict[str, str]:
    """{path, sha256} of a file inside the deployment folder (paths are relative to the manifest)."""
    return {"path": rel, "sha256": sha256_file(folder / rel)}


def metrics_source(report: dict[str, Any] | None, origin: str | None) -> dict[str, Any]:
    """Where SA/RA came from and which attack produced them; a null source says how to get numbers."""
    if report is None:
        return {"origin": None, "attack": None, "num_samples": 0,
                "note": "no SA/RA: no eval.json for this checkpoint; run `oatdeploy eval` or export with --evaluate"}
    return {"origin": origin, "attack": report["attack"], "num_samples": report["num_samples"]}


def variant_metrics(report: dict[str, Any] | None, lam: float, width: float) -> dict[str, Any]:
    row = next((r for r in (report or {}).get("results", []) if abs(r["lambda"] - lam) < 1e-6
                and abs(r["width"] - width) < 1e-6), None)
    if row is None:
        return {"clean_acc": None, "robust_acc": None, "attack": None, "samples": 0}
    intervals = {k: row[k] for k in ("clean_ci95", "robust_ci95") if k in row}
    return {"clean_acc": row["clean_acc"], "robust_acc": row["robust_acc"], **intervals,
            "attack": attack_label(report), "samples": report["num_samples"]}


def new_manifest(model: dict[str, Any], threat_model: dict[str, Any], source: dict[str, Any],
                 metrics: dict[str, Any], calibration: dict[str, str], clean: dict[str, str]) -> dict[str, Any]:
    """The top level; variants are appended with `variant_entry`."""
    return {"format": owner.FORMAT, "version": owner.VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": model, "threat_model": threat_model, "source": source, "metrics_source": metrics,
            "calibration": calibration, "verification": {"clean": clean}, "variants": []}


def variant_entry(folder: Path, lam: float, width: float, mode: str, onnx: str, cost: tuple[int, int],
                  metrics: dict[str, Any], verification: dict[str, Any], adv_examples: str,
                  lam_index: int | None = None) -> dict[str, Any]:
    """One (λ, width): its graph (shared graphs are listed once per λ with `lam_index`), cost and checks."""
    entry: dict[str, Any] = {
        "id": variant_id(lam, width), "lambda": lam, "width": width, "mode": mode,
        "onnx": onnx, "sha256": sha256_file(folder / onnx), "params": cost[0], "flops": cost[1],
        "metrics": metrics, "verification": verification, "adv_examples": file_entry(folder, adv_examples),
        "engines": [], "latency": {},
    }
    if lam_index is not None:
        entry["lam_index"] = lam_index
    return entry


def check_manifest(manifest: dict[str, Any]) -> None:
    """Refuse to write a manifest that the reader would reject (a bug here, not a user error)."""
    missing = [k for k in REQUIRED if k not in manifest]
    missing += [f"variants[{i}].{k}" for i, v in enumerate(manifest.get("variants", [])) for k in REQUIRED_VARIANT
                if k not in v]
    if missing or not manifest.get("variants"):
        raise ValueError(f"manifest is incomplete: missing {', '.join(missing) or 'variants'}")


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Check, then write-and-rename `folder/manifest.json`."""
    check_manifest(manifest)
    return owner.write_manifest(folder, manifest)
