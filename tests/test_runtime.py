"""Runtime: torch-free loading and serving, selection vs brute force, refusals, switcher threads and drift."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import oatdeploy_cli
from oatdeploy.runtime import Deployment, NoFeasibleVariant, Variant, pareto_front, select
from oatdeploy.runtime.backends.base import Runner

from oatdeploy.errors import ArtifactError, OatError


@pytest.fixture(scope="module")
def deploy(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from oatdeploy.export.pipeline import export_deployment

    out = tmp_path_factory.mktemp("rt") / "fm"
    export_deployment(trained_run / "supernet.pt", out, verify_samples=32, calib_samples=8, adv_steps=2,
                      progress=False)
    Deployment.load(out).profile(batches=(1,), min_runs=5, min_seconds=0.0, warmup=2)
    return out


@pytest.fixture()
def copy(deploy: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(deploy, tmp_path / "copy"))


def test_runtime_works_with_torch_blocked(deploy: Path) -> None:
    code = f"""
import sys
sys.modules["torch"] = None
from oatdeploy.runtime import Deployment
dep = Deployment.load({str(deploy)!r})
dep.profile(batches=(2,), min_runs=5, min_seconds=0.0, warmup=1)
v = dep.select(min_robust_acc=0.0, max_latency_ms=1e6)
sw = dep.switcher(min_robust_acc=0.0)
out = sw(dep.sample_input(3))
assert out.shape == (3, 10), out.shape
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
print("ok", v.id)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]


def random_variants(rng: random.Random, n: int) -> list[Variant]:
    return [Variant(id=f"v{i}", lam=0.0, width=1.0, clean_acc=round(rng.uniform(0.5, 1), 2),
                    robust_acc=round(rng.uniform(0, 0.8), 2), latency_ms=round(rng.uniform(0.5, 5), 1),
                    artifact=f"v{i}.onnx") for i in range(n)]


def test_selection_equals_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(500):
        variants = random_variants(rng, rng.randint(1, 12))
        lat, ra = rng.choice([None, rng.uniform(0.5, 5)]), rng.choice([None, rng.uniform(0, 0.8)])
        sa, objective = rng.choice([None, rng.uniform(0.5, 1)]), rng.choice(["clean", "robust"])
        ok = [v for v in variants if (lat is None or v.latency_ms <= lat) and (ra is None or v.robust_acc >= ra)
              and (sa is None or v.clean_acc >= sa)]
        if not ok:
            with pytest.raises(NoFeasibleVariant):
                select(variants, lat, ra, sa, objective)
            continue
        best = max((v.clean_acc if objective == "clean" else v.robust_acc) for v in ok)
        fastest = min(v.latency_ms for v in ok if (v.clean_acc if objective == "clean" else v.robust_acc) == best)
        chosen = select(variants, lat, ra, sa, objective)
        assert (chosen.clean_acc if objective == "clean" else chosen.robust_acc) == best
        assert chosen.latency_ms == fastest


def test_pareto_front_is_the_non_dominated_set() -> None:
    rng = random.Random(1)
    for _ in range(100):
        variants = random_variants(rng, 10)
        front = {v.id for v in pareto_front(variants)}
        for a, b in itertools.permutations(variants, 2):
            if (a.clean_acc >= b.clean_acc and a.robust_acc >= b.robust_acc and a.latency_ms <= b.latency_ms
                    and (a.clean_acc, a.robust_acc, a.latency_ms) != (b.clean_acc, b.robust_acc, b.latency_ms)):
                assert b.id not in front


def test_infeasible_names_the_binding_constraint_and_the_closest() -> None:
    variants = [Variant("fast", 0, 0.5, 0.9, 0.2, 1.0, "a"), Variant("robust", 1, 1, 0.8, 0.7, 4.0, "b")]
    with pytest.raises(NoFeasibleVariant, match=r"latency binds; the closest is robust"):
        select(variants, max_latency_ms=3.5, min_robust_acc=0.6)
    with pytest.raises(NoFeasibleVariant, match=r"robust accuracy binds"):
        select(variants, min_robust_acc=0.75)
    assert select(variants, max_latency_ms=2.0).id == "fast"
    assert select(variants, objective="robust").id == "robust"


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
        Deployment.load(copy, verify=False)


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
        super().__init__(inner.path)
        self.inner, self.delay_s = inner, delay_s

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.infer(x, lam_index)


def test_drift_reselects_when_p95_leaves_the_budget(deploy: Path) -> None:
    dep = Deployment.load(deploy)
    budget = 50.0
    best = dep.select(max_latency_ms=budget, min_robust_acc=0.0)

    def factory(v: Variant) -> Runner:
        runner = dep.runner(v)
        return SlowRunner(runner, 0.06) if v.artifact == best.artifact else runner

    sw = dep.switcher(max_latency_ms=budget, min_robust_acc=0.0, window=5, runner_factory=factory)
    assert sw.current.id == best.id
    x = dep.sample_input(1)
    for _ in range(6):
        sw(x)
    assert sw.current.id != best.id and sw.observed[best.id] > budget
    sw.set_budget(min_robust_acc=0.0)  # the observed latency is remembered across budget changes
    assert sw.current.id != best.id


def test_memory_cap_loads_fewer(deploy: Path) -> None:
    dep = Deployment.load(deploy)
    sw = dep.switcher(max_loaded=2)
    assert len(sw._runners) == 1
    for v in dep.variants:
        sw.use(v)
        assert len(sw._runners) <= 2
    assert sw(dep.sample_input(1)).shape == (1, 10)


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
