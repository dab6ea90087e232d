"""Jetson power modes on a fake tree laid out like a Jetson's: nvpmodel -q, /etc/nvpmodel.conf,
/var/lib/nvpmodel/status, the GPU's devfreq folder and thermal zones; profiles keep their conditions."""

from __future__ import annotations

import stat
import warnings
from pathlib import Path

import pytest

from oatdeploy.runtime import Deployment
from oatdeploy.runtime.errors import OatError, OatWarning
from oatdeploy.runtime.folder import read_manifest
from oatdeploy.runtime.power import power_state
from tests.runtime.deploykit import set_profile

NVPMODEL_CONF = """< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
< POWER_MODEL ID=0 NAME=MAXN >
CPU_ONLINE CORE_0 1
GPU MAX_FREQ 1300500000
< POWER_MODEL ID=1 NAME=MODE_10W >
GPU MAX_FREQ 612000000
< POWER_MODEL ID=2 NAME=MODE_15W >
GPU MAX_FREQ 714000000
< PM_CONFIG DEFAULT=2 >
"""


def jetson_tree(root: Path, mode_id: int = 2, gpu: str = "17000000.gpu", pinned: bool = False) -> Path:
    """/etc, /var/lib/nvpmodel and /sys as JetPack lays them out on an Orin (gpu='17000000.ga10b' on JetPack 5)."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/nvpmodel.conf").write_text(NVPMODEL_CONF)
    (root / "var/lib/nvpmodel").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/nvpmodel/status").write_text(f"pmode:{mode_id:04d} fmode:quiet\n")
    devfreq = root / "sys/class/devfreq" / gpu
    devfreq.mkdir(parents=True, exist_ok=True)
    top = {0: 1300500000, 1: 612000000, 2: 714000000}[mode_id]
    for name, value in (("cur_freq", top if pinned else 306000000), ("min_freq", top if pinned else 306000000),
                        ("max_freq", top)):
        (devfreq / name).write_text(f"{value}\n")
    other = root / "sys/class/devfreq/3d00000.nvdla0"  # not the GPU: ignored
    other.mkdir(exist_ok=True)
    (other / "cur_freq").write_text("1\n")
    for i, (kind, milli) in enumerate((("cpu-thermal", 45500), ("gpu-thermal", 43125), ("tj-thermal", 47000))):
        zone = root / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{milli}\n")
    return root


def nvpmodel_tool(folder: Path, name: str, mode_id: int) -> str:
    """An `nvpmodel` that answers -q the way the real one does."""
    tool = folder / "nvpmodel"
    tool.write_text(f"#!/bin/sh\necho 'NV Fan Mode:quiet'\necho 'NV Power Mode: {name}'\necho {mode_id}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return str(tool)


def test_power_state_from_nvpmodel_files_and_sysfs(tmp_path: Path) -> None:
    root = jetson_tree(tmp_path / "orin")
    state = power_state(root, nvpmodel=None)
    assert state is not None
    assert (state["mode"], state["mode_id"], state["clocks"]) == ("MODE_15W", 2, "dynamic")
    assert state["gpu_max_hz"] == 714000000
    assert state["temperature_c"] == {"cpu-thermal": 45.5, "gpu-thermal": 43.1, "tj-thermal": 47.0}
    pinned = power_state(jetson_tree(tmp_path / "xavier", 0, "17000000.gv11b", pinned=True), nvpmodel=None)
    assert pinned is not None and (pinned["mode"], pinned["clocks"]) == ("MAXN", "pinned")
    assert power_state(tmp_path / "not-a-jetson", nvpmodel=None) is None


def test_nvpmodel_query_wins_over_the_status_file(tmp_path: Path) -> None:
    root = jetson_tree(tmp_path / "orin", mode_id=2)
    state = power_state(root, nvpmodel=nvpmodel_tool(tmp_path, "MAXN", 0))
    assert state is not None and (state["mode"], state["mode_id"]) == ("MAXN", 0)


def test_profiles_keep_their_conditions_and_select_warns_or_refuses(folded: Path, tmp_path: Path) -> None:
    maxn = power_state(jetson_tree(tmp_path / "maxn", 0, pinned=True), nvpmodel=None)
    slow = power_state(jetson_tree(tmp_path / "15w", 2), nvpmodel=None)
    dep = Deployment.load(folded, power_state=maxn)
    assert dep.key().split("|")[0].endswith("[MAXN]")
    dep.profile(min_runs=5, min_seconds=0.0, warmup=1)
    saved = read_manifest(folded).variants[0].latency[dep.key()]
    assert saved.power["mode"] == "MAXN" and saved.power["clocks"] == "pinned"
    assert "tj-thermal" in saved.power["temperature_c"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same mode: no warning
        assert Deployment.load(folded, power_state=maxn).select(max_latency_ms=1e3)

    at_15w = Deployment.load(folded, power_state=slow)
    assert at_15w.key() != dep.key() and at_15w.key().split("|")[0].endswith("[MODE_15W]")
    with pytest.warns(OatWarning, match="power mode MAXN when profiled, MODE_15W now"):
        chosen = at_15w.select(max_latency_ms=1e3)
    assert chosen.latency_ms is not None
    strict = Deployment.load(folded, power_state=slow, power_policy="refuse")
    with pytest.raises(OatError, match="power mode MAXN when profiled, MODE_15W now"):
        strict.select(max_latency_ms=1e3)
    with pytest.raises(OatError, match="power mode"):
        strict.switcher(max_latency_ms=1e3)
    with pytest.warns(OatWarning, match="power mode"):
        at_15w.switcher(max_latency_ms=1e3)


def test_same_mode_with_other_clocks_is_reported(folded: Path, tmp_path: Path) -> None:
    pinned = power_state(jetson_tree(tmp_path / "a", 0, pinned=True), nvpmodel=None)
    dynamic = power_state(jetson_tree(tmp_path / "b", 0, pinned=False), nvpmodel=None)
    dep = Deployment.load(folded, power_state=pinned)
    set_profile(folded, dep.key(), {v.id: 1.0 for v in dep.variants}, power=pinned)
    with pytest.warns(OatWarning, match="clocks pinned when profiled, dynamic now"):
        Deployment.load(folded, power_state=dynamic).select(max_latency_ms=5.0)
