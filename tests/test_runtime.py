"""Runtime: torch-free loading and serving, selection vs brute force, refusals, switcher threads and drift."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from oatdeploy.runtime import Deployment, NoFeasibleVariant, Variant
from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.errors import ArtifactError, OatError
from tests.conftest import export_run, oatdeploy_cli


@pytest.fixture(scope="module")
def deploy(profiled_deploy: Path) -> Path:
    return profiled_deploy


@pytest.fixture(scope="module")
def shared_deploy(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("rt") / "shared", "shared", samples=16, adv_steps=1)


@pytest.fixture()
def copy(deploy: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(deploy, tmp_path / "copy"))


def test_runtime_works_with_torch_blocked(deploy: Path, shared_deploy: Path, tmp_path: Path) -> None:
    folders = [str(shutil.copytree(d, tmp_path / d.name)) for d in (deploy, shared_deploy)]
    code = f"""
import sys
sys.modules["torch"] = None
from oatdeploy.runtime import Deployment
for folder in {folders!r}:
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
             ["bench", "latency", folder, "--runs", "5", "--json"], ["plot", folder, "--max-latency-ms", "1000"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
print("ok", v.id)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]


def test_select_without_a_profile_says_to_profile(copy: Path) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    for v in manifest["variants"]:
        v["latency"] = {}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OatError, match="oatdeploy profile"):
        Deployment.load(copy).select(max_latency_ms=5.0)


def test_tampered_missing_and_unknown_version_are_refused(copy: Path) -> None:
    target = copy / json.loads((copy / "manifest.json").read_text())["variants"][0]["onnx"]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        Deployment.load(copy)
    target.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Deployment.load(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["version"] = 2
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="version 2"):
        Deployment.load(copy, check_sha256=False)


def test_switcher_is_thread_safe_while_switching(deploy: Path) -> None:
    dep = Deployment.load(deploy)
    x = dep.sample_input(4)
    expected = {}
    for v in dep.variants:
        with dep.runner(v) as r:
            expected[v.id] = r.infer(x, v.lam_index)
    sw = dep.switcher(history=10_000)
    errors: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        for _ in range(40):
            out, v = sw(x, return_variant=True)
            if not np.array_equal(out, expected[v.id]):
                errors.append(v.id)

    def switch() -> None:
        i = 0
        while not stop.is_set():
            sw.use(dep.variants[i % len(dep.variants)])
            i += 1

    switcher_thread = threading.Thread(target=switch)
    switcher_thread.start()
    workers = [threading.Thread(target=serve) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    switcher_thread.join()
    assert not errors and len(sw.served) == 320 and sw.switches > 10
    assert len(set(sw.served)) > 1


class SlowRunner(Runner):
    """A real ORT runner that becomes slow, like a Jetson that throttles when hot."""

    def __init__(self, inner: Runner, delay_s: float) -> None:
        self.inner, self.delay_s, self.spec = inner, delay_s, inner.spec

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.infer(x, lam_index)


def test_drift_reselects_when_p95_leaves_the_budget(deploy: Path) -> None:
    dep = Deployment.load(deploy)
    budget = 50.0
    best = dep.select(max_latency_ms=budget, min_robust_acc=0.0)

    def factory(v: Variant) -> Runner:
        runner = dep.runner(v)
        return SlowRunner(runner, 0.06) if v.path == best.path else runner

    sw = dep.switcher(max_latency_ms=budget, min_robust_acc=0.0, window=5, runner_factory=factory)
    assert sw.current.id == best.id
    x = dep.sample_input(1)
    for _ in range(6):
        sw(x)
    deadline = time.monotonic() + 10  # re-selection runs in the background, off the serving path
    while sw.current.id == best.id and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sw.current.id != best.id and sw.observed[best.id] > budget
    sw.set_budget(min_robust_acc=0.0)  # the observed latency is remembered across budget changes
    assert sw.current.id != best.id


def test_shared_mode_serves_the_same_function_with_one_graph_per_width(deploy: Path, shared_deploy: Path) -> None:
    folded, shared = Deployment.load(deploy), Deployment.load(shared_deploy)
    assert {v.id for v in folded.variants} == {v.id for v in shared.variants}
    assert len({v.path for v in shared.variants}) == 2
    x = shared.sample_input(8)
    sw = shared.switcher(history=100)
    assert len(sw._runners) == 2
    for v in folded.variants:
        sw.use(v.id)
        with folded.runner(v) as r:
            np.testing.assert_allclose(sw(x), r.infer(x), atol=1e-4)
    assert list(sw.served) == [v.id for v in folded.variants]


def test_switching_takes_microseconds(deploy: Path) -> None:
    sw = Deployment.load(deploy).switcher()
    ids = [v.id for v in sw.variants]
    times = []
    for i in range(2000):
        t0 = time.perf_counter()
        sw.use(ids[i % len(ids)])
        times.append(time.perf_counter() - t0)
    median_us = 1e6 * float(np.median(times))
    print(f"median switch time {median_us:.1f} µs")
    assert median_us < 200


def test_set_budget_switches_now_and_keeps_the_old_budget_when_infeasible(deploy: Path) -> None:
    dep = Deployment.load(deploy)
    sw = dep.switcher(objective="clean", min_robust_acc=0.0)
    assert sw.current.id == dep.select(min_robust_acc=0.0).id
    top_ra = max(v.robust_acc for v in dep.variants)
    chosen = sw.set_budget(min_robust_acc=top_ra)
    assert sw.current is chosen and chosen.robust_acc == top_ra
    with pytest.raises(NoFeasibleVariant, match="robust accuracy binds"):
        sw.set_budget(min_robust_acc=1.01)
    assert sw.budget["min_robust_acc"] == top_ra and sw.current is chosen
    with pytest.raises(TypeError, match="unknown budget"):
        sw.set_budget(max_latency=3)


def test_profiles_of_several_devices_live_side_by_side(copy: Path) -> None:
    from oatdeploy.runtime.device import cpu_name

    manifest = json.loads((copy / "manifest.json").read_text())
    other = "NVIDIA Jetson Orin Nano|trt|fp16|b1"
    manifest["variants"][0]["latency"][other] = {"backend": "trt", "batch": 1, "precision": "fp16", "p50_ms": 0.3,
                                                 "p95_ms": 0.4}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    dep = Deployment.load(copy)
    rows = dep.profile(batches=(1, 4), min_runs=5, min_seconds=0.0, warmup=1)
    assert {r["key"] for r in rows} == {f"{cpu_name()}|ort|fp32|b1", f"{cpu_name()}|ort|fp32|b4"}
    saved = json.loads((copy / "manifest.json").read_text())["variants"][0]["latency"]
    assert other in saved and saved[f"{cpu_name()}|ort|fp32|b4"]["batch"] == 4
    assert all(r["p50_ms"] <= r["p95_ms"] and r["runs"] >= 5 for r in rows)
    assert not list(copy.glob(".manifest.json.*")), "a temporary file was left behind"
    assert dep.select(max_latency_ms=1e6, batch=4, strict=True).latency_ms == max(  # strict: equal SA, lower p50
        (v for v in dep.variants_for(batch=4)), key=lambda v: (v.clean_acc, -v.latency_ms)).latency_ms


def test_cli_profile_and_select(copy: Path, tmp_path: Path) -> None:
    result = oatdeploy_cli("profile", str(copy), "--runs", "5", "--quiet")
    assert result.returncode == 0 and "p50 ms" in result.stdout, result.stderr
    result = oatdeploy_cli("select", str(copy), "--max-latency-ms", "1000", "--min-robust-acc", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"].startswith("lam")
    result = oatdeploy_cli("select", str(copy), "--max-latency-ms", "0.000001")
    assert result.returncode == 2 and "latency binds" in result.stderr and "Traceback" not in result.stderr
    result = oatdeploy_cli("select", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no manifest.json" in result.stderr
    result = oatdeploy_cli("profile", str(copy), "--backend", "trt")
    assert result.returncode == 2 and "TensorRT" in result.stderr and "Traceback" not in result.stderr
    result = oatdeploy_cli("bench", "latency", str(copy), "--runs", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["variants"]) == 6 and all(r["p50_ms"] > 0 for r in report["variants"])
    (copy / "manifest.json").write_text("{not json")
    result = oatdeploy_cli("select", str(copy), "--min-robust-acc", "0.1")
    assert result.returncode == 2 and "not valid JSON" in result.stderr and "Traceback" not in result.stderr
