"""The conditions a latency was measured under on a Jetson: power mode, clock state, temperature.

A Jetson's latency changes 2-3x with its nvpmodel power mode and with `jetson_clocks`, so a profile keeps
them and the device key includes the mode. Everything is read where readable and skipped otherwise:
`nvpmodel -q` (its "NV Power Mode: NAME" line and the mode id below it), else the mode id in
/var/lib/nvpmodel/status named through /etc/nvpmodel.conf's POWER_MODEL lines; the GPU's devfreq
folder (/sys/class/devfreq/17000000.gpu on Orin with JetPack 6, 17000000.ga10b on JetPack 5,
17000000.gv11b on Xavier, 57000000.gpu on Nano), where min = max = cur means jetson_clocks pinned the
clocks; and /sys/class/thermal/thermal_zone*/{type,temp} (millidegrees C). `root` points at another
tree (tests use a fake one laid out like a Jetson's). Python 3.8+, no torch.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

GPU_DEVFREQ = re.compile(r"^(17000000|57000000)\.(gpu|ga10b|gv11b|gp10b|gm20b)$")
POWER_MODEL = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)")
QUERY = re.compile(r"NV Power Mode:\s*(\S+)")
STATUS = re.compile(r"pmode:0*(\d+)")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def query_nvpmodel(command: str = "nvpmodel") -> dict[str, Any] | None:
    """{"name", "id"} from `nvpmodel -q`, or None where nvpmodel is absent or says nothing usable."""
    exe = shutil.which(command)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.splitlines()
    for i, line in enumerate(lines):
        match = QUERY.search(line)
        if match:
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return {"name": match.group(1), "id": int(following) if following.isdigit() else None}
    return None


def mode_from_files(root: Path) -> dict[str, Any] | None:
    """The mode id nvpmodel saved in /var/lib/nvpmodel/status, named by /etc/nvpmodel.conf (no root rights needed)."""
    status = _read(root / "var/lib/nvpmodel/status")
    match = STATUS.search(status or "")
    if not match:
        return None
    mode_id = int(match.group(1))
    names = {int(i): n for i, n in POWER_MODEL.findall(_read(root / "etc/nvpmodel.conf") or "")}
    return {"name": names.get(mode_id, f"mode {mode_id}"), "id": mode_id}


def gpu_clocks(root: Path) -> dict[str, Any] | None:
    """The GPU's devfreq state in Hz, and whether jetson_clocks pinned it (min = max)."""
    folder = root / "sys/class/devfreq"
    if not folder.is_dir():
        return None
    for entry in sorted(folder.iterdir()):
        if GPU_DEVFREQ.match(entry.name):
            cur, low, high = (_int(entry / f) for f in ("cur_freq", "min_freq", "max_freq"))
            if cur is None and high is None:
                continue
            return {"gpu_cur_hz": cur, "gpu_min_hz": low, "gpu_max_hz": high,
                    "pinned": low is not None and low == high}
    return None


def temperatures(root: Path) -> dict[str, float]:
    """Each thermal zone's temperature in °C, by its type (CPU-therm, GPU-therm, tj-thermal, ...)."""
    out: dict[str, float] = {}
    folder = root / "sys/class/thermal"
    if not folder.is_dir():
        return out
    for zone in sorted(folder.glob("thermal_zone*")):
        kind, milli = _read(zone / "type"), _int(zone / "temp")
        if kind and milli is not None and milli > -100_000:
            out[kind] = round(milli / 1000.0, 1)
    return out


def power_state(root: Path = Path("/"), nvpmodel: str | None = "nvpmodel") -> dict[str, Any] | None:
    """What a latency measured now depends on, or None where there is no Jetson power management to read.

    {"mode": "MAXN", "mode_id": 0, "clocks": "pinned"|"dynamic"|None, "gpu_max_hz": ..., "temperature_c": {...}}
    """
    mode = (query_nvpmodel(nvpmodel) if nvpmodel else None) or mode_from_files(root)
    clocks = gpu_clocks(root)
    if mode is None and clocks is None:
        return None
    state: dict[str, Any] = {"mode": mode["name"] if mode else None, "mode_id": mode["id"] if mode else None,
                             "clocks": None if clocks is None else ("pinned" if clocks["pinned"] else "dynamic")}
    if clocks:
        state["gpu_max_hz"] = clocks["gpu_max_hz"]
        state["gpu_cur_hz"] = clocks["gpu_cur_hz"]
    temps = temperatures(root)
    if temps:
        state["temperature_c"] = temps
    return state


def differences(recorded: dict[str, Any] | None, now: dict[str, Any] | None) -> list:
    """What differs between the conditions of a profile and now (power mode, clock state), as phrases."""
    if not recorded or not now:
        return []
    out = []
    if recorded.get("mode") != now.get("mode"):
        out.append(f"power mode {recorded.get('mode')} when profiled, {now.get('mode')} now")
    if recorded.get("clocks") and now.get("clocks") and recorded["clocks"] != now["clocks"]:
        out.append(f"clocks {recorded['clocks']} when profiled, {now['clocks']} now (jetson_clocks)")
    return out
