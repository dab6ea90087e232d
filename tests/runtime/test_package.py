"""The package's layout (docs/architecture.md): one object per module however it is imported, a device side that
imports nothing beyond runtime/, choices defined once, and a regular install used from the repository root as
docs/jetson.md has a Jetson user do it. Torch-free, so it runs under Python 3.8 and 3.10 as well."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "oatdeploy", "export", "runtime")
# The files outside runtime/ that the device runs: importing the package, the command line and its list of commands.
DEVICE_ROOT_FILES = ("oatdeploy/__init__.py", "oatdeploy/cli.py", "oatdeploy/commands/__init__.py")

# Imports every module of runtime/ and export/ that this environment can import, tries the two folders' own names
# as well, and prints each module file that ended up loaded under more than one name.
PROBE = """
import importlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
names = []
for folder in ("runtime", "export"):
    for path in sorted((root / folder).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names.append("oatdeploy." + ".".join(p for p in parts if p != "__init__"))
for name in names:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name.startswith("oatdeploy"):
            raise
        print("skipped", name, "needs", e.name)
for other in ("runtime", "runtime.selection", "export", "export.manifest"):
    try:
        importlib.import_module(other)
        print("imported", other)
    except ModuleNotFoundError as e:  # not beside the working directory: nothing to load twice
        assert e.name == other.split(".")[0], e
    except ImportError as e:  # beside it: refused by name
        assert "import oatdeploy." in str(e) or "import that" in str(e), e
files = {}
for name, module in list(sys.modules.items()):
    f = getattr(module, "__file__", None)
    if f and (name.startswith(("oatdeploy", "runtime", "export"))):
        files.setdefault(str(pathlib.Path(f).resolve()), []).append(name)
twice = {f: n for f, n in files.items() if len(n) > 1}
print("twice", twice)
print("runtime", sys.modules["oatdeploy.runtime"].__file__)
"""


def probe(python_args: list[str], root: Path, cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run([sys.executable, *python_args, "-c", PROBE, str(root)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def regular_install(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the checkout and a regular (non-editable) install of it: (checkout, install target)."""
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
    return checkout, target


def test_each_module_is_one_object_from_the_root_from_an_installed_copy_and_from_the_root_over_one(
        tmp_path: Path) -> None:
    checkout, target = regular_install(tmp_path)
    # -S: no site-packages .pth files, so no editable-install finder from the test's own environment helps out
    paths = [str(target), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    cases = [(ROOT, ROOT, None, ROOT / "runtime"),  # this checkout, as the tests run it
             (checkout, checkout, env, checkout / "runtime"),  # a checkout's root shadowing an installed copy
             (checkout, tmp_path, env, target / "oatdeploy" / "runtime")]  # the installed copy
    for root, cwd, environ, expected in cases:
        out = probe(["-S"] if environ else [], root, cwd, environ)
        assert "twice {}" in out, (cwd, out)
        assert not [line for line in out if line.startswith("imported")], (cwd, out)  # `import runtime` refused
        assert Path(out[-1].split(" ", 1)[1]).parent == expected  # each copy uses its own runtime, never a mix


def test_the_cli_lists_every_command_and_gates_the_workstation_ones_by_python() -> None:
    done = subprocess.run([sys.executable, "-m", "oatdeploy.cli", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "build-engines" in done.stdout and "train" in done.stdout, done.stderr
    if sys.version_info >= (3, 10):
        return  # the workstation commands run here (the main suite tests them)
    done = subprocess.run([sys.executable, "-m", "oatdeploy.cli", "train", "--out", "x"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "needs Python 3.10+" in done.stderr and "Traceback" not in done.stderr


def test_every_device_command_lives_in_runtime_commands_and_every_module_there_is_a_command() -> None:
    from oatdeploy.cli import COMMANDS
    from oatdeploy.runtime.commands import DEVICE, on_device

    modules = {p.stem for p in (ROOT / "runtime" / "commands").glob("*.py")} - {"__init__", "options"}
    assert {target.split(":")[0].rsplit(".", 1)[1] for target in DEVICE.values()} == modules
    assert {name for name, target in COMMANDS.items() if on_device(target)} == set(DEVICE)
    workstation = {p.stem for p in (ROOT / "oatdeploy" / "commands").glob("*.py")}
    assert not modules & workstation


def imports(path: Path, top_level_only: bool) -> list[tuple[int, str]]:
    """(line, module) of every import in a file (only those run on import with `top_level_only`)."""
    tree = ast.parse(path.read_text())
    found = []
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


def test_the_device_side_imports_nothing_beyond_it() -> None:
    allowed = ("oatdeploy.runtime", "oatdeploy.commands")  # the workstation's command list is a dict of names
    bad = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        bad += [f"{path.relative_to(ROOT)}:{line} {name}" for line, name in imports(path, top_level_only=False)
                if name.split(".")[0] == "torch" or (name.startswith("oatdeploy") and name != "oatdeploy"
                                                     and not name.startswith("oatdeploy.runtime"))]
    for rel in DEVICE_ROOT_FILES:
        bad += [f"{rel}:{line} {name}" for line, name in imports(ROOT / rel, top_level_only=True)
                if name.split(".")[0] == "torch" or (name.startswith("oatdeploy.") and not name.startswith(allowed))]
    assert not bad, bad


def test_python_3_8_is_required_of_exactly_the_device_side() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.ruff.per-file-target-version]", 1)[1].split("\n[", 1)[0]
    py38 = set(re.findall(r'^"([^"]+)" = "py38"$', section, flags=re.M))
    assert py38 == {"runtime/**", "tests/runtime/**", *DEVICE_ROOT_FILES, "benchmarks/switcher.py"}


# Each choice the command line offers, as a set; its one definition is the module named.
CHOICES = {
    frozenset({"fp32", "fp16", "int8"}): "runtime/manifest.py",
    frozenset({"fp16", "int8"}): "runtime/manifest.py",
    frozenset({"folded", "shared"}): "runtime/manifest.py",
    frozenset({"ort", "trt"}): "runtime/backends/__init__.py",
    frozenset({"clean", "robust"}): "runtime/manifest.py",
    frozenset({"warn", "refuse"}): "runtime/deployment.py",
    frozenset({"rand", "none", "onehot", "dct"}): "oatdeploy/config.py",
    frozenset({"linear", "mlp", "paper"}): "oatdeploy/config.py",
    frozenset({"weighted", "sampled"}): "oatdeploy/config.py",
    frozenset({"all", "sandwich"}): "oatdeploy/config.py",
    frozenset({"pgd", "apgd-ce", "autoattack"}): "oatdeploy/eval_files.py",
    frozenset({"text", "json"}): "runtime/commands/options.py",
}


@pytest.mark.parametrize("folder", ["oatdeploy", "export", "runtime"])
def test_each_choice_is_spelled_once(folder: str) -> None:
    again = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1 and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                home = CHOICES.get(frozenset(e.value for e in node.elts))  # type: ignore[attr-defined]
                if home is not None and home != rel:
                    again.append(f"{rel}:{node.lineno} spells the choices defined in {home}")
    assert not again, again
