"""Profiling with its noise: variants interleaved round-robin over rounds, each round's median stored, a large spread
reported, shown in `profile`'s table, and used by `select` as a tie."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oatdeploy.runtime import Deployment
from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.errors import OatWarning
from oatdeploy.runtime.folder import read_manifest
from oatdeploy.runtime.profile import format_profile
from tests.runtime.deploykit import oatdeploy


class Recorded(Runner):
    """A real ONNX Runtime runner that logs each call (and, for one variant, is slow in one round)."""

    def __init__(self, inner: Runner, name: str, log: list, slow_calls: range = range(0)) -> None:
        self.inner, self.name, self.log, self.spec = inner, name, log, inner.spec
        self.slow_calls, self.calls = slow_calls, 0

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        self.log.append(self.name)
        if self.calls in self.slow_calls:
            time.sleep(0.002)  # a burst of other work on the device, during one round
        self.calls += 1
        return self.inner.infer(x, lam_index)

    def close(self) -> None:
        self.inner.close()


def recording(monkeypatch: pytest.MonkeyPatch, log: list, slow: dict[str, range] | None = None) -> None:
    real = Deployment.runner

    def runner(self: Deployment, variant: Any, backend: Any = None, **options: Any) -> Runner:
        return Recorded(real(self, variant, backend, **options), variant.path, log, (slow or {}).get(variant.path,
                                                                                                        range(0)))

    monkeypatch.setattr(Deployment, "runner", runner)


def blocks(log: list) -> list:
    """Consecutive runs of the same name, as (name, length)."""
    out: list = []
    for name in log:
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1] + 1)
        else:
            out.append((name, 1))
    return out


def test_profiling_interleaves_the_variants_round_robin(folded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log: list = []
    recording(monkeypatch, log)
    rows = Deployment.load(folded).profile(rounds=3, min_runs=6, min_seconds=0.0, warmup=1)
    timed = blocks(log[6:])  # after one warm-up call each
    names = [v.onnx for v in read_manifest(folded).variants]
    assert timed == [(n, 2) for n in names + names[1:] + names[:1] + names[2:] + names[:2]]  # each round starts later
    assert all(r.latency.runs == 6 and len(r.latency.round_p50_ms) == 3 for r in rows)


def test_the_spread_between_rounds_is_stored_warned_about_shown_and_tied_on(folded: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    log: list = []
    recording(monkeypatch, log, slow={"lam0-w0.5.onnx": range(1 + 20, 1 + 40)})  # its second round of 20 runs
    with pytest.warns(OatWarning, match=r"latency is noisy here: .*worst: lam0-w0.5 at batch 1, round medians"):
        rows = Deployment.load(folded).profile(rounds=3, min_runs=60, min_seconds=0.0, warmup=1)
    saved = read_manifest(folded).variants[0].latency[rows[0].key]
    lo, hi = min(saved.round_p50_ms), max(saved.round_p50_ms)
    assert len(saved.round_p50_ms) == 3 and hi - lo > 1.5 and saved.p50_ms < hi
    v = Deployment.load(folded).variants[0]
    assert v.latency_spread_ms == (lo, hi)
    table = format_profile(rows)
    assert f"{lo:.3f}-{hi:.3f}" in table and table.splitlines()[2].endswith(" !")
    assert "rounds p50" in table.splitlines()[0] and "select treats p50s within the spread as tied" in table


def test_cli_profile_shows_the_spread_and_takes_rounds(folded: Path) -> None:
    done = oatdeploy("profile", str(folded), "--runs", "5", "--rounds", "2", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "rounds p50 ms" in done.stdout and "spread" in done.stdout
    assert all(len(next(iter(v.latency.values())).round_p50_ms) == 2 for v in read_manifest(folded).variants)
    done = oatdeploy("profile", str(folded), "--rounds", "1")
    assert done.returncode == 2 and "--rounds" in done.stderr


def test_profiles_of_several_devices_live_side_by_side(folded: Path) -> None:
    from oatdeploy.runtime.device import cpu_name

    manifest = json.loads((folded / "manifest.json").read_text())
    other = "NVIDIA Jetson Orin Nano|trt|fp16|b1"
    manifest["variants"][0]["latency"][other] = {"backend": "trt", "batch": 1, "precision": "fp16", "p50_ms": 0.3,
                                                 "p95_ms": 0.4}
    (folded / "manifest.json").write_text(json.dumps(manifest))
    dep = Deployment.load(folded)
    rows = dep.profile(batches=(1, 4), min_runs=5, min_seconds=0.0, warmup=1)
    assert {r.key for r in rows} == {f"{cpu_name()}|ort|fp32|b1", f"{cpu_name()}|ort|fp32|b4"}
    saved = json.loads((folded / "manifest.json").read_text())["variants"][0]["latency"]
    assert other in saved and saved[f"{cpu_name()}|ort|fp32|b4"]["batch"] == 4
    assert all(r.latency.p50_ms <= r.latency.p95_ms and r.latency.runs >= 5 for r in rows)
    assert not list(folded.glob(".manifest.json.*")), "a temporary file was left behind"
    assert dep.select(max_latency_ms=1e6, batch=4, strict=True).latency_ms == max(  # strict: equal SA, lower p50
        (v for v in dep.variants_for(batch=4)), key=lambda v: (v.clean_acc, -v.latency_ms)).latency_ms
