"""The install: the quick start's `dev` extra brings what the demo and the tests use and no GPU package, each extra
is in the README's table, and without ONNX Runtime a command names the extra that brings it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
GPU_PACKAGES = {"onnxruntime-gpu", "tensorrt", "cuda-python"}


def project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_quick_start_installs_what_the_tests_use_and_no_gpu_package() -> None:
    extras = project()["optional-dependencies"]
    assert not (names(project()["dependencies"]) | names(extras["dev"])) & GPU_PACKAGES
    for extra in ("cpu", "train", "plot", "images", "attacks"):  # what the demo and the test suite import
        assert names(extras[extra]) <= names(extras["dev"]), extra
    assert names(extras["gpu"]) == {"onnxruntime-gpu"}


def test_the_readme_says_which_extra_is_for_what() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Which extra for what"):]
    rows = re.findall(r"^\| `([a-z]+)` \| (.+?) \| (.+?) \|$", section, re.M)
    assert sorted(r[0] for r in rows) == sorted(project()["optional-dependencies"])
    for extra, brings, _ in rows:
        if extra != "dev":
            assert all(name.split("-")[0] in brings.lower() for name in names(project()["optional-dependencies"][extra])
                       if name != "onnxscript"), extra


def test_without_onnx_runtime_a_command_names_the_extra(profiled_deploy: Path) -> None:
    code = "import sys; sys.modules['onnxruntime'] = None\nfrom oatdeploy.cli import main; main(sys.argv[1:])"
    result = subprocess.run([sys.executable, "-c", code, "profile", str(profiled_deploy)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: ONNX Runtime is not installed: pip install 'oatdeploy[cpu]' (or 'oatdeploy[gpu]' for CUDA; on a "
        "Jetson, JetPack's onnxruntime-gpu wheel: docs/jetson.md)"]
