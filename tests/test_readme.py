"""The README runs as written: every command block and the Python snippet, in order, in one fresh folder.

Only sizes change, by one mechanical rule, so the test cannot drift from the README:

- each `oatdeploy` command gets the options in SHRINK appended (click keeps the last value of an option
  given twice): a few training steps on a few images, a few evaluation images and attack steps, a few
  verification images, a few timed runs;
- budgets become ones any model meets (accuracy floors 0, latency ceilings 1000 ms), since a model
  trained for two steps has no robust accuracy to speak of;
- `--dataset fashion-mnist` becomes `--dataset fmnist-mini` where Debian's Fashion-MNIST files are
  absent (`.ci/run` installs them where it can).

Not run here: the virtual-environment and `pip install` steps (this environment was made by them; the
quick start's install line must be the one `.ci/run` uses), `python -m pytest tests` (this is that run;
`.ci/run` must call it exactly so), the TensorRT block where TensorRT is not installed (tests/test_trt.py covers it
there), and a block that names a `--data-dir` this checkout does not hold (data the user brings).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
INSTALL = 'pip install torch==2.13.0 -e ".[dev]"'
TEST_COMMAND = "python -m pytest tests"
SHRINK = {
    "demo": "--max-steps 2 --eval-limit 8",
    "train": "--max-steps 2 --train-limit 64 --batch-size 16 --pgd-steps 1",
    "eval": "--limit 4 --pgd-steps 1",
    "export": "--verify-samples 8 --calib-samples 8",
    "profile": "--runs 5",
    "bench train-step": "--batch-size 2 --pgd-steps 1 --steps 1 --warmup 0",
    "bench latency": "--runs 5",
}
BUDGETS = [(r"(min[-_]robust[-_]acc[ =])[0-9.]+", r"\g<1>0"), (r"(max[-_]latency[-_]ms[ =])[0-9.]+", r"\g<1>1000")]
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def shrink(command: str) -> str:
    """The README command with its sizes shrunk (see the module docstring)."""
    command = re.sub(r"\s+#.*$", "", command)  # a trailing comment would swallow the appended options
    for pattern, repl in BUDGETS:
        command = re.sub(pattern, repl, command)
    if not DEBIAN_FMNIST.is_dir():
        command = command.replace("--dataset fashion-mnist", "--dataset fmnist-mini")
    words = command.split()
    after = words[words.index("train") - 1:] if "torchrun" in words else words
    name = " ".join(after[1:3]) if after[1] == "bench" else after[1]
    return f"{command} {SHRINK[name]}" if name in SHRINK else command


def run(command: str, cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"$ {command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def block_commands(block: str) -> list[str]:
    """One block's shell commands in order, without comment-only lines and the steps this test cannot run."""
    if "--backend trt" in block and importlib.util.find_spec("tensorrt") is None:
        return []
    if any(not (ROOT / d).exists() for d in re.findall(r"--data-dir\s+(\S+)", block)):
        return []  # it reads data the user brings (CIFAR-10, say), which is not here
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#") or line.startswith("python3 -m venv"):
            continue
        parts = [p.strip() for p in line.split(" && ")]
        out += [p for p in parts if not p.startswith("pip install") and p != TEST_COMMAND]
    return out


def commands() -> list[str]:
    return [c for block in blocks("bash") for c in block_commands(block)]


def test_the_quick_start_is_what_ci_runs() -> None:
    quick = blocks("bash")[0].splitlines()
    assert quick[0].startswith("python3 -m venv .venv && . .venv/bin/activate")
    assert quick[1].startswith(f"{INSTALL} && oatdeploy demo --out demo/") and quick[2] == TEST_COMMAND
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert INSTALL in ci and TEST_COMMAND in ci


def test_outputs_of_the_readme_are_git_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["demo/run/supernet.pt", "runs/fm/supernet.pt", "deploy/fm/manifest.json", ".venv/bin/python"]
    result = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.split() == paths


def test_shrink_only_appends_sizes() -> None:
    assert shrink("oatdeploy eval runs/fm/supernet.pt --limit 1000   # PGD-20") == \
        "oatdeploy eval runs/fm/supernet.pt --limit 1000 --limit 4 --pgd-steps 1"
    assert shrink("oatdeploy select d --max-latency-ms 4 --min-robust-acc 0.6 --format json") == \
        "oatdeploy select d --max-latency-ms 1000 --min-robust-acc 0 --format json"
    assert shrink("torchrun --nproc_per_node 2 $(which oatdeploy) train --out r").endswith(f"--out r {SHRINK['train']}")


def test_blocks_split_into_the_commands_a_shell_would_run() -> None:
    block = ("# a comment\npip install x && oatdeploy demo --out demo/\n"
             "oatdeploy export runs/fm/supernet.pt \\\n    --out deploy/fm   # folded\n\npython -m pytest tests\n")
    assert block_commands(block) == ["oatdeploy demo --out demo/",
                                     "oatdeploy export runs/fm/supernet.pt      --out deploy/fm   # folded"]
    assert block_commands("oatdeploy train --dataset cifar10 --data-dir not-here/cifar --out r\n") == []


@pytest.mark.slow
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # the README's paths are relative to the repo root
    cmds = commands()
    assert any(c.startswith("oatdeploy demo") for c in cmds) and any("predict" in c for c in cmds)
    for command in cmds:
        run(shrink(command), tmp_path)
    (python,) = blocks("python")
    for pattern, repl in BUDGETS:
        python = re.sub(pattern, repl, python)
    (tmp_path / "snippet.py").write_text(python)
    run(f"{sys.executable} snippet.py", tmp_path)
    assert (tmp_path / "deploy" / "fm" / "manifest.json").is_file() and (tmp_path / "demo" / "deploy").is_dir()
