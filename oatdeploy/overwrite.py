"""Refuse to replace a run, a deployment or an evaluation unless the user said so.

Every command that writes a run folder (`train`, `import-reference`, `demo`), a deployment folder
(`export`, `demo`) or an evaluation (`eval`) calls one of these before doing any work, so a finished
run is never lost to a mistyped `--out`. Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oatdeploy.eval_files import same_evaluation
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.folder import RUN_CHECKPOINT as CHECKPOINT
from oatdeploy.runtime.manifest import describe_evaluation

MANIFEST = "manifest.json"


def check_run_folder(out: str | Path, force: bool = False, resume: bool = False, resumable: bool = True) -> None:
    """A new run may not start over a folder that holds a checkpoint: `--resume` continues it, `--force` replaces it.

    `resumable=False` is for commands that cannot continue a run (`import-reference`): only `--force` is offered.
    """
    if force and resume:
        raise OatError("--resume continues the run in --out and --force starts it over: pass one of them")
    ckpt = Path(out) / CHECKPOINT
    if force or resume or not ckpt.exists():
        return
    ways = "--resume to continue it or --force to start over" if resumable else "--force to replace it"
    raise OatError(f"{ckpt} already holds a checkpoint; pass {ways}, or choose another --out")


def check_deployment_folder(out: str | Path, force: bool = False) -> None:
    """An existing deployment is replaced (with its profiles, engines and quantized models) only with `--force`."""
    if not force and (Path(out) / MANIFEST).exists():
        raise OatError(f"{out} already holds a deployment; pass --force to replace it (its latency profiles, "
                       "engines and quantized models go with it), or choose another --out")


def check_evaluation_file(path: str | Path, report: dict[str, Any], force: bool = False) -> None:
    """An evaluation file may be rewritten by the same evaluation (attack, image count, data), not by another."""
    path = Path(path)
    if force or not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict) or "attack" not in old or "results" not in old:
        raise OatError(f"{path} exists and is not an evaluation written by `oatdeploy eval`; choose another --out, "
                       "or pass --force to replace it")
    if not same_evaluation(old, report):
        raise OatError(f"{path} holds another evaluation ({describe_evaluation(old)}; this one is "
                       f"{describe_evaluation(report)}); choose another --out, or pass --force to replace it")

