"""Where torch work runs: `--device auto|cpu|cuda|cuda:N` made concrete, and what each device wants.

One resolver for every command that trains, attacks or evaluates (`--device` is defined once, in
oatdeploy/commands/config_options.py), so a wrong device is refused the same way everywhere: one line
naming the fix, exit code 2, before any work starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from oatdeploy.runtime.errors import OatError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
CPU_EVAL_BATCH = 256


def resolve_device(name: str = "auto") -> torch.device:
    """auto: the current CUDA GPU when torch sees one, else the CPU; cpu; cuda (the current GPU); cuda:N."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise OatError(f"--device must be {DEVICE_CHOICES}, got {name!r}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise OatError(f"--device must be {DEVICE_CHOICES}, got {name!r}")
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no GPU visible to torch"
        raise OatError(f"--device {name}: this machine has no CUDA GPU that torch can use ({build}); "
                       "use --device cpu (or auto)")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if device.index is None else device.index
    if not 0 <= index < count:
        raise OatError(f"--device {name}: this machine has {count} CUDA GPU{'s' if count > 1 else ''} "
                       f"(cuda:0 to cuda:{count - 1}); pick one of them or use --device auto")
    return torch.device("cuda", index)


def eval_batch_size(device: torch.device) -> int:
    """Images per attack batch: 256 on a CPU (larger batches gain nothing there); on a GPU enough to fill
    it with the small models here (a 32×32 ResNet-34 PGD batch of 2,048 needs a few GB)."""
    if device.type != "cuda":
        return CPU_EVAL_BATCH
    gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return 2048 if gib >= 40 else 1024 if gib >= 16 else 512


def module_device(module: object) -> torch.device:
    """The device of a module's first parameter (the CPU for a function or a module without parameters)."""
    if isinstance(module, nn.Module):
        first = next(module.parameters(), None)
        if first is not None:
            return first.device
    return torch.device("cpu")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` on `device`; a host tensor goes to a GPU through pinned memory, asynchronously, so the copy never
    makes the host wait for the GPU (a pageable copy synchronises the stream)."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@contextlib.contextmanager
def ieee_fp32(device: torch.device) -> Iterator[None]:
    """Full fp32 convolutions on a GPU inside the block (cuDNN uses TF32 by default on Ampere and later, about
    three significant digits): evaluation on a GPU then agrees with the CPU image by image."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved
