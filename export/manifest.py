"""manifest.json as export first writes it, built from the runtime's typed entries (`oatdeploy.runtime.manifest`,
the one definition of the contract) and checked by the reader's own schema before it is written."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from oatdeploy.runtime import folder
from oatdeploy.runtime.atomic import sha256_file
from oatdeploy.runtime.checks import Invalid
from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.runtime.manifest import (
    FORMAT,
    OUTCOME_KINDS,
    VERSION,
    FileRef,
    Manifest,
    Metrics,
    MetricsSource,
    Model,
    Outcomes,
    Source,
    ThreatModel,
    VariantEntry,
    Verification,
    attack_label,
    outcome_array,
    parse_manifest,
    same_choice,
    variant_id,
)


def file_entry(deploy: Path, rel: str) -> FileRef:
    """A file inside the deployment folder (paths are relative to the manifest) and its sha256."""
    return FileRef(rel, sha256_file(deploy / rel), (deploy / rel).stat().st_size)


def metrics_source(report: dict[str, Any] | None, origin: str | None) -> MetricsSource:
    """Where SA/RA came from and which attack produced them; a null source says how to get numbers."""
    if report is None:
        return MetricsSource(None, None, 0, "no SA/RA: no eval.json for this checkpoint; run `oatdeploy eval` or "
                                            "export with --evaluate")
    return MetricsSource(origin, report["attack"], report["num_samples"])


OUTCOMES = "outcomes.npz"  # where export writes the fp32 per-image outcomes in the deployment


def eval_row(report: dict[str, Any] | None, lam: float, width: float) -> dict[str, Any] | None:
    """One (λ, width)'s row of an evaluation (eval.json), if it has one."""
    return next((r for r in (report or {}).get("results", []) if same_choice(r["lambda"], lam)
                 and same_choice(r["width"], width)), None)


def variant_metrics(report: dict[str, Any] | None, lam: float, width: float) -> Metrics:
    """One (λ, width)'s row of an evaluation (eval.json), or no numbers."""
    row = eval_row(report, lam, width)
    if row is None or report is None:
        return Metrics(None, None, attack=None, samples=0)
    return Metrics(row["clean_acc"], row["robust_acc"], row.get("clean_ci95"), row.get("robust_ci95"),
                   report["num_samples"], attack_label(report))


def outcome_arrays(report: dict[str, Any] | None, variants: list[VariantEntry]) -> dict[str, np.ndarray]:
    """The deployment's outcomes file (`OUTCOMES`): each variant's per-image outcomes from eval.json (hex of
    packed bits) as uint8 arrays named by `outcome_array`; empty when any variant's row lacks them (an
    evaluation written before they were kept), since `select` pairs variants only on images all of them saw."""
    arrays = {}
    for v in variants:
        row = eval_row(report, v.lam, v.width) or {}
        for kind in OUTCOME_KINDS:
            text = row.get(f"{kind}_correct")
            if not isinstance(text, str):
                return {}
            arrays[outcome_array(v.id, kind)] = np.frombuffer(bytes.fromhex(text), dtype=np.uint8)
    return arrays


def outcomes_entry(ref: FileRef, samples: int) -> dict[str, Outcomes]:
    """The manifest's `outcomes` for the file just written: those of the fp32 SA/RA, over `samples` images."""
    return {"fp32": Outcomes(ref.path, ref.sha256, samples)}


def new_manifest(model: Model, threat_model: ThreatModel, source: Source, metrics: MetricsSource,
                 calibration: FileRef, clean: FileRef) -> Manifest:
    """The top level; variants are appended with `variant_entry`."""
    return Manifest(FORMAT, VERSION, model, threat_model, source, [], created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    metrics_source=metrics, calibration=calibration, verification={"clean": clean})


def variant_entry(deploy: Path, lam: float, width: float, mode: str, onnx: str, cost: tuple[int, int],
                  metrics: Metrics, verification: Verification, adv_examples: str,
                  lam_index: int | None = None) -> VariantEntry:
    """One (λ, width): its graph (shared graphs are listed once per λ with `lam_index`), cost and checks."""
    return VariantEntry(variant_id(lam, width), lam, width, mode, onnx, sha256_file(deploy / onnx), metrics,
                        params=cost[0], flops=cost[1], lam_index=lam_index, verification=verification,
                        adv_examples=file_entry(deploy, adv_examples))


def write_manifest(deploy: str | Path, manifest: Manifest) -> Path:
    """Check the manifest with the schema the device reads it with (NaN and infinities included, which the
    reader's JSON parser refuses), then write-and-rename `deploy/manifest.json`. Export calls this in its staging
    folder, so a manifest the device would refuse never replaces a deployment. What fails here came from the
    evaluation export read (the rest export computes itself)."""
    try:
        parse_manifest(manifest.to_json())
    except Invalid as e:
        source = manifest.metrics_source.origin if manifest.metrics_source else None
        fix = (f"fix or re-create {source} (`oatdeploy eval`)" if source else "please report it")
        raise ArtifactError(f"export refuses to write a manifest the device would refuse: {e}; {fix}") from None
    return folder.write_manifest(deploy, manifest)


def format_variants(manifest: Manifest) -> str:
    """What export wrote, one variant a line: cost, SA/RA, and how far the graph is from the supernet."""
    head = f"{'variant':<14} {'params':>9} {'MFLOPs':>8} {'SA':>6} {'RA':>6} {'max|Δlogit|':>12}"
    lines = [head, "-" * len(head)]
    for v in manifest.variants:
        sa = "-" if v.metrics.clean_acc is None else f"{v.metrics.clean_acc:.3f}"
        ra = "-" if v.metrics.robust_acc is None else f"{v.metrics.robust_acc:.3f}"
        diff = v.verification.max_abs_diff if v.verification and v.verification.max_abs_diff is not None else 0.0
        lines.append(f"{v.id:<14} {v.params or 0:>9,} {(v.flops or 0) / 1e6:>8.1f} {sa:>6} {ra:>6} {diff:>12.2e}")
    return "\n".join(lines)
