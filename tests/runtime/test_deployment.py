"""A deployment as the device loads and serves it: torch-free, refusing what it cannot trust, and every hint the exact
command that fixes the problem (each hint test runs a command that fails, runs the commands its one error line
names, each of which must succeed, and checks the original command then works)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest

from oatdeploy.runtime import Deployment, power
from oatdeploy.runtime.engines import build_engines
from oatdeploy.runtime.errors import ArtifactError, OatError
from tests.runtime.fake_tensorrt import FakeCompiler, HostCudart, install_tensorrt

IMAGES = Path(__file__).resolve().parents[2] / "examples" / "images"
HINT = re.compile(r"`(oatdeploy [^`]+)`")
Run = Callable[..., "tuple[int, str, str]"]


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Run:
    """The console entry point in this process (so a stand-in TensorRT or power state applies to it too)."""
    from oatdeploy.cli import main

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its own; undo it after

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()  # only this command's output
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        out = capsys.readouterr()
        return int(exited.value.code or 0), out.out, out.err

    return run


def follow_hints(cli: Run, *original: str) -> tuple[list[str], str]:
    """Run `original`; while it fails (exit 2, one line), run each command the line names, then retry.
    Returns the commands followed and the original's final output."""
    followed: list[str] = []
    for _ in range(4):
        code, out, err = cli(*original)
        if code == 0:
            return followed, out
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        commands = HINT.findall(err)
        assert commands, f"the error names no command: {err}"
        for command in commands:
            code, _, err = cli(*shlex.split(command)[1:])
            assert code == 0, f"the hinted `{command}` failed: {err}"
            followed.append(command)
    raise AssertionError(f"still failing after following {followed}")


def test_select_at_batch_8_points_to_profiling_batch_8(folded: Path, cli: Run) -> None:
    followed, _ = follow_hints(cli, "select", str(folded), "--batch-size", "8", "--max-latency-ms", "100")
    assert followed == [f"oatdeploy profile {folded} --backend ort --batch-size 8"]


def test_select_int8_before_quantize_points_to_quantize_then_to_an_int8_profile(folded: Path, cli: Run) -> None:
    followed, _ = follow_hints(cli, "select", str(folded), "--precision", "int8", "--max-latency-ms", "100")
    assert followed == [f"oatdeploy quantize {folded} --precision int8",
                        f"oatdeploy profile {folded} --backend ort --precision int8"]


def test_an_int8_select_says_its_numbers_are_fp32_until_verify_measures_int8(folded: Path, cli: Run) -> None:
    follow_hints(cli, "quantize", str(folded), "--precision", "int8")
    code, out, _ = cli("select", str(folded), "--precision", "int8")
    assert code == 0 and "SA/RA measured in fp32, not int8" in out and "SA/RA: fp32 numbers" in out
    (verify,) = HINT.findall(out)
    assert verify == f"oatdeploy verify {folded} --precision int8 --backend ort"
    assert cli(*shlex.split(verify)[1:])[0] == 0
    code, out, _ = cli("select", str(folded), "--precision", "int8")
    assert code == 0 and "SA/RA: int8, as `oatdeploy verify` measured what runs (ort-int8" in out
    assert "measured in fp32" not in out
    chosen = Deployment.load(folded, precision="int8").select()
    assert chosen.accuracy_precision == "int8" and chosen.clean_ci95 is not None
    assert f"SA {chosen.clean_acc:.3f}" in out


@pytest.fixture()
def tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in TensorRT 10 whose builder is the fake compiler, so build-engines runs from the CLI."""
    from oatdeploy.runtime.backends import trt_build

    install_tensorrt(monkeypatch, HostCudart())
    monkeypatch.setattr(trt_build, "TensorRTCompiler", lambda workspace_mb: FakeCompiler())


def test_tensorrt_int8_before_quantize_points_to_quantize_then_build_engines(folded: Path, cli: Run,
                                                                          tensorrt: Any) -> None:
    followed, out = follow_hints(cli, "select", str(folded), "--backend", "trt", "--precision", "int8")
    assert followed == [f"oatdeploy quantize {folded} --precision int8",
                        f"oatdeploy build-engines {folded} --precision int8"]
    assert "|trt|int8|b1" in out


def test_tensorrt_at_a_batch_the_engines_do_not_take_points_to_a_build_that_does(folded: Path, cli: Run,
                                                                               tensorrt: Any) -> None:
    build_engines(folded, "fp32", batch_profile=(1, 1, 4), compiler=FakeCompiler(), progress=False)
    followed, _ = follow_hints(cli, "select", str(folded), "--backend", "trt", "--batch-size", "8")
    assert followed == [f"oatdeploy build-engines {folded} --precision fp32 --max-shape 8x1x8x8"]


def test_a_profile_from_another_power_mode_points_to_profiling_in_this_one(folded: Path, cli: Run, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.runtime.test_power import jetson_tree

    maxn = power.power_state(jetson_tree(tmp_path / "maxn", 0, pinned=True), nvpmodel=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a noisy profile may say so; not what this test is about
        Deployment.load(folded, power_state=maxn).profile(batches=(4,), min_runs=5, min_seconds=0.0, warmup=1,
                                                          rounds=2)
    slow = power.power_state(jetson_tree(tmp_path / "15w", 0, pinned=False), nvpmodel=None)
    monkeypatch.setattr(power, "power_state", lambda: slow)
    followed, _ = follow_hints(cli, "select", str(folded), "--batch-size", "4", "--max-latency-ms", "100",
                               "--power-mismatch", "refuse")
    assert followed == [f"oatdeploy profile {folded} --backend ort --batch-size 4"]


def test_the_device_side_and_its_commands_work_with_torch_blocked(folded: Path, shared: Path) -> None:
    code = f"""
import sys
sys.modules["torch"] = None
from oatdeploy.runtime import Deployment
for folder in {[str(folded), str(shared)]!r}:
    dep = Deployment.load(folder)
    dep.profile(batches=(1, 2), min_runs=5, min_seconds=0.0, warmup=1)
    v = dep.select(min_robust_acc=0.0, max_latency_ms=1e6, batch=2)
    sw = dep.switcher(min_robust_acc=0.0)
    for u in dep.variants:
        sw.use(u)
        assert sw(dep.sample_input(3)).shape == (3, 10)
from click.testing import CliRunner
from oatdeploy.cli import cli
for args in (["profile", folder, "--runs", "5", "--quiet"], ["select", folder, "--max-latency-ms", "1000"],
             ["bench", "latency", folder, "--runs", "5", "--format", "json"], ["info", folder],
             ["info", folder, "--format", "json"],
             ["predict", folder, {str(IMAGES)!r}, "--min-robust-acc", "0", "--format", "json"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
print("ok", v.id)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]


def test_select_without_a_profile_says_to_profile(folded: Path) -> None:
    with pytest.raises(OatError, match="oatdeploy profile"):
        Deployment.load(folded).select(max_latency_ms=5.0)


def test_tampered_missing_and_unknown_version_are_refused(folded: Path) -> None:
    target = folded / json.loads((folded / "manifest.json").read_text())["variants"][0]["onnx"]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        Deployment.load(folded)
    target.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Deployment.load(folded)
    manifest = json.loads((folded / "manifest.json").read_text())
    manifest["version"] = 2
    (folded / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="version 2"):
        Deployment.load(folded, check_sha256=False)
