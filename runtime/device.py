"""Which device we are on, as the key latency profiles are stored under."""

from __future__ import annotations

import functools
import platform
import re
import shutil
import subprocess
from pathlib import Path

MODE_SUFFIX = re.compile(r" \[[^]]*\]$")


@functools.lru_cache(maxsize=None)
def gpu_name() -> str | None:
    """The first NVIDIA GPU's name (nvidia-smi), or the Jetson model from the device tree."""
    board = board_model()
    if board and ("jetson" in board.lower() or Path("/etc/nv_tegra_release").is_file()):
        return board
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout
        except (subprocess.SubprocessError, OSError):
            return None
        return out.splitlines()[0].strip() if out.strip() else None
    return None


@functools.lru_cache(maxsize=None)
def board_model() -> str | None:
    """The board name an ARM device tree gives (a Jetson, a Raspberry Pi), if any."""
    model = Path("/proc/device-tree/model")
    if not model.is_file():
        return None
    return model.read_bytes().rstrip(b"\x00").decode(errors="replace").strip() or None


@functools.lru_cache(maxsize=None)
def cpu_name() -> str:
    """The CPU model (x86 cpuinfo), else the board's CPU (ARM cpuinfo has no model name), else the arch."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    board = board_model()
    if board:
        return f"{board} CPU"
    return platform.processor() or platform.machine()


def device_name(on_gpu: bool, power_mode: str | None = None) -> str:
    """The device part of a latency key; on a Jetson it carries the power mode: 'NVIDIA Jetson ... [MAXN]'."""
    name = (gpu_name() or "unknown GPU") if on_gpu else cpu_name()
    return f"{name} [{power_mode}]" if power_mode else name


def latency_key(device: str, backend: str, precision: str, batch: int) -> str:
    """The manifest's latency key: '<device>|<backend>|<precision>|b<batch>' (README, docs/jetson.md)."""
    return f"{device}|{backend}|{precision}|b{batch}"


def without_power_mode(key: str) -> str:
    """The key with its device's '[mode]' removed: profiles of one device in other power modes share it."""
    device, _, rest = key.partition("|")
    return MODE_SUFFIX.sub("", device) + "|" + rest
