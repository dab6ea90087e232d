"""A regular (non-editable) install, used from the repository root as docs/jetson.md has a Jetson user do it:
the checkout's oatdeploy/ shadows the installed package, and oatdeploy.runtime must still import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "oatdeploy", "export", "runtime")
PROBE = ("import oatdeploy.runtime, oatdeploy.runtime.backends.ort, oatdeploy.export\n"
         "from oatdeploy.runtime import Deployment\n"
         "print(oatdeploy.runtime.__file__)")


def test_runtime_imports_from_the_repo_root_with_a_regular_install(tmp_path: Path) -> None:
    checkout, target = tmp_path / "checkout", tmp_path / "installed"
    checkout.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, checkout / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, checkout / name)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-compile", "--target", str(target), str(checkout)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (target / "oatdeploy" / "runtime" / "__init__.py").is_file()
    shutil.rmtree(checkout / "build", ignore_errors=True)
    # -S: no site-packages .pth files, so no editable-install finder from the test's own environment helps out
    paths = [str(target), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    for cwd, expected in ((checkout, checkout / "runtime"), (tmp_path, target / "oatdeploy" / "runtime")):
        done = subprocess.run([sys.executable, "-S", "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, (cwd, done.stderr[-2000:])
        assert Path(done.stdout.strip()).parent == expected  # each copy uses its own runtime, never a mix


def test_the_cli_lists_every_command_and_gates_the_workstation_ones_by_python() -> None:
    done = subprocess.run([sys.executable, "-m", "oatdeploy.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "build-engines" in done.stdout and "train" in done.stdout, done.stderr
    if sys.version_info >= (3, 10):
        return  # the workstation commands run here (the main suite tests them)
    done = subprocess.run([sys.executable, "-m", "oatdeploy.cli", "train", "--out", "x"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "needs Python 3.10+" in done.stderr and "Traceback" not in done.stderr
