"""benchmarks/gpu_check.py --smoke: every step of the GPU check runs, on the CPU at tiny sizes, so that the check
is ready for whoever has a GPU (it writes where it is told, never into benchmarks/results)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_gpu_check_smoke_run_passes_every_step(tmp_path: Path) -> None:
    before = set((ROOT / "benchmarks" / "results").glob("gpu_check_*"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--smoke", "--results", str(tmp_path / "results"),
                           "--work", str(tmp_path / "work")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    report = json.loads((tmp_path / "results" / "gpu_check_cpu-smoke-run.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["tests", "step", "study", "eval", "export", "nccl"]
    assert all(s["ok"] for s in steps.values()), report["steps"]
    assert set(steps["step"]["found"]["variants"]) == {"ours", "graphs"}
    assert steps["eval"]["found"]["cpu_check"] == {"images": 12, "most_differing_images_sa": 0,
                                                    "most_differing_images_ra": 0}
    assert steps["export"]["found"]["max_abs_logit_diff_onnxruntime"] < 1e-3
    assert steps["nccl"]["found"]["backend"] == "gloo" and steps["nccl"]["found"]["all_reduce"] == [1.0] * 4
    assert (tmp_path / "results" / "gpu_check_cpu-smoke-run.md").read_text().startswith("# GPU check: CPU smoke run")
    assert set((ROOT / "benchmarks" / "results").glob("gpu_check_*")) == before
