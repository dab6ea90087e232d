"""Evaluations beside a checkpoint: each file named by what it holds, and the one `export` reads. Torch-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oatdeploy.runtime.atomic import sha256_file
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.manifest import describe_evaluation

ATTACKS = ("pgd", "apgd-ce", "autoattack")  # what `oatdeploy eval --attack` runs (oatdeploy.evaluate.make_attack)
# What makes two evaluations the same: a file may be rewritten only by an evaluation equal in all of these.
SIGNATURE = ("attack", "num_samples", "dataset", "split")


def evaluation_name(report: dict[str, Any], with_eps: bool = False) -> str:
    """`eval-pgd20-n1000.json`, `eval-apgd-ce100-eps0.05-n100.json`, `eval-autoattack-standard-val-n500.json`: the
    attack (its steps or version), its radius when chosen, a split other than the test set, the image count."""
    attack = report["attack"]
    kind = f"-{attack['version']}" if attack.get("version") else attack.get("steps") or ""
    eps = f"-eps{attack['eps']:g}" if with_eps else ""
    split = f"-{report['split']}" if report.get("split", "test") != "test" else ""
    return f"eval-{attack['name']}{kind}{eps}{split}-n{report['num_samples']}.json"


def same_evaluation(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in SIGNATURE)


def evaluations_of(checkpoint: Path) -> dict[Path, dict[str, Any]]:
    """The eval*.json files beside `checkpoint` that were computed for it (by its sha256), with their reports."""
    sha = sha256_file(checkpoint)
    found = {}
    for path in sorted(checkpoint.parent.glob("eval*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and report.get("checkpoint_sha256") == sha and report.get("results"):
            found[path] = report
    return found


def choose_evaluation(checkpoint: str | Path, eval_json: str | None) -> str | None:
    """The evaluation `export` takes SA/RA from: the one asked for, else the only one of this checkpoint."""
    checkpoint = Path(checkpoint)
    if eval_json or not checkpoint.is_file():
        return eval_json
    found = evaluations_of(checkpoint)
    if len(found) > 1:
        listed = ", ".join(f"{p} ({describe_evaluation(r)})" for p, r in found.items())
        raise OatError(f"{len(found)} evaluations of {checkpoint} lie beside it: {listed}; choose one with "
                       "--eval-json PATH")
    return str(next(iter(found))) if found else None
