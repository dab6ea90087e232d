"""Data-parallel plumbing for the trainer: process group, DDP wrapping, per-rank state, lost ranks.

Only `train()` under torchrun/srun (WORLD_SIZE > 1) comes here; a one-process run never builds a
process group or a DDP wrapper, so it pays nothing for them.

A rank that stops answering (crashed, killed, hung, its node gone) makes every other rank's next
collective fail: at once when its connection drops, after `timeout` when it hangs. The survivors then
record their own failure in the rendezvous store, wait briefly for each other's records, and name the
ranks that left none: those are the ones that stopped answering.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

STORE_PREFIX = "oatdeploy/"
# What gloo and NCCL say when a peer times out or drops its connection (they raise plain RuntimeErrors).
COMM_ERROR_WORDS = ("gloo", "nccl", "pair closure", "connection closed", "connection reset", "timed out", "timeout")


class RankLost(RuntimeError):
    """Another rank stopped answering; the message names it (shown as one line, exit code 1)."""


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we created the process group, so we tear it down
    store: Any = None  # the rendezvous store (None when the caller made the group, or one process)
    timeout_s: float = 0.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(timeout_s: float, device_type: str) -> DistInfo:
    """torchrun/srun set WORLD_SIZE, RANK, MASTER_ADDR/PORT; gloo on CPU, NCCL on CUDA, `timeout_s` per collective."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if dist.is_initialized():  # the caller made the group (and tears it down)
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                        timeout_s=timeout_s)
    # torch.optim imports torch._dynamo on the first optimizer; done while a group exists, that import
    # leaves references to the group that destroy_process_group() cannot drop, so gloo's worker threads
    # outlive it and may free their last work (holding our tensors) during interpreter shutdown, which
    # aborts the process ("terminate called without an active exception", about 1 run in 40).
    importlib.import_module("torch._dynamo")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        # Without blocking wait, NCCL's watchdog aborts the process on a timeout before Python can say which
        # rank stopped; the trainer already waits for every step's loss, so blocking costs no overlap.
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    timeout = datetime.timedelta(seconds=timeout_s)
    store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
    store.set_timeout(timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    return DistInfo(rank, world, int(os.environ.get("LOCAL_RANK", "0")), owns_group=True, store=store,
                    timeout_s=timeout_s)


def shutdown(info: DistInfo, clean: bool = True) -> None:
    """Tear down a group we created; after a clean end, first wait for every rank (rank 0 may still be writing).

    Exiting with a live gloo group aborts the process, so even a failed run destroys it.
    """
    if info.owns_group and dist.is_initialized():
        if clean:
            # Each gloo worker thread keeps its last work until it takes the next, and destroying the group joins
            # them while holding the GIL: a last work whose tensors have Python objects then deadlocks. End every
            # worker on a barrier (tensors made in C++): four at once occupy both of gloo's two threads.
            for work in [dist.barrier(async_op=True) for _ in range(4)]:
                work.wait()
        dist.destroy_process_group()


def is_comm_failure(error: BaseException) -> bool:
    """A failed collective: torch's own distributed errors, or the RuntimeErrors gloo/NCCL raise through DDP."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error).lower()
    return type(error) is RuntimeError and any(s in text for s in COMM_ERROR_WORDS)


def wrap_ddp(module: nn.Module, device: torch.device, find_unused: bool = True) -> nn.Module:
    """DDP that leaves a parameter no rank used in a step without a gradient, as one process would.

    find_unused_parameters (`find_unused`, when a step can leave one unused: `trainer.may_leave_unused`):
    widths a step skips and the BN a λ list never routes to get no gradient on any rank, so DDP leaves
    their .grad unset and SGD skips them (no weight decay, no momentum). Where nothing can be unused, the
    search is off: it would cost a graph traversal per step and make torch warn on every rank.
    Buffers start as rank 0's and are then averaged by `average_buffers`, not broadcast at each forward.
    """
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # Rank 0's buffers at init, none at each forward (torch 2.13 renamed broadcast_buffers).
    no_forward_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                       else {"broadcast_buffers": False})
    return ddp(module, device_ids=ids, find_unused_parameters=find_unused, gradient_as_bucket_view=True,
               **no_forward_sync)


def average_buffers(model: nn.Module, world_size: int) -> None:
    """Average BN running statistics over ranks (each rank saw its own shard), in one all-reduce.

    Done every step: PGD attacks in eval mode, so the running statistics shape every rank's attack.
    """
    bufs = [b for b in model.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.reshape(-1) for b in bufs])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for b in bufs:
        n = b.numel()
        b.copy_(flat[offset : offset + n].view_as(b))
        offset += n


def any_rank(flag: int, device: torch.device) -> int:
    """The largest `flag` over all ranks: every rank learns that one of them was asked to stop."""
    t = torch.tensor([flag], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather_to_main(states: dict[str, torch.Tensor], info: DistInfo) -> list[dict[str, torch.Tensor]] | None:
    """Every rank's `states` (byte tensors of the same sizes on every rank: generator states) on rank 0, in rank
    order; None elsewhere.

    A tensor collective, not `gather_object`: the pickled bytes it sends are Python-owned memory, and a gloo
    worker that frees its last work while the group is destroyed waits for the GIL that the destroying
    thread holds, so a rank hung at exit after its final checkpoint.
    """
    keys = sorted(states)
    sizes = [states[k].numel() for k in keys]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flat = torch.cat([states[k].reshape(-1) for k in keys]).to(device)
    out = [torch.empty_like(flat) for _ in range(info.world_size)] if info.is_main else None
    dist.gather(flat, out, dst=0)
    if out is None:
        return None
    return [{k: part.cpu().clone() for k, part in zip(keys, t.split(sizes), strict=True)} for t in out]


def heartbeat(info: DistInfo, step: int) -> None:
    """Record this rank's last finished step, for the message if another rank stops answering."""
    if info.store is not None:
        info.store.set(f"{STORE_PREFIX}step/{info.rank}", str(step))


def lost_rank_error(info: DistInfo, step: int, error: BaseException, grace_s: float = 5.0) -> RankLost:
    """After a failed collective: name the ranks that did not fail alongside this one (they stopped answering)."""
    head = (f"rank {info.rank}: a collective at step {step + 1} failed ({type(error).__name__}: "
            f"{(str(error).strip().splitlines() or [''])[0][:160]})")
    if info.store is None:
        return RankLost(f"{head}; another rank stopped answering")
    try:
        info.store.set(f"{STORE_PREFIX}failed/{info.rank}", str(step))
        others = [r for r in range(info.world_size) if r != info.rank]
        deadline = time.monotonic() + grace_s
        silent = others
        while silent and time.monotonic() < deadline:
            silent = [r for r in others if not info.store.check([f"{STORE_PREFIX}failed/{r}"])]
            time.sleep(0.2)
        seen = {r: _last_step(info, r) for r in silent}
    except Exception:  # the store lives with rank 0's launcher: if it is gone, so is that node
        return RankLost(f"{head}; the rendezvous store is unreachable too, so rank 0's node stopped answering")
    if not silent:
        return RankLost(f"{head} on every rank at once (the network or the store host failed)")
    names = ", ".join(f"rank {r} (last finished step {seen[r]})" for r in silent)
    return RankLost(f"{head}: {names} stopped answering within the {info.timeout_s:g} s process-group timeout "
                    "(--dist-timeout); check that rank's log and node, then relaunch with --resume")


def _last_step(info: DistInfo, rank: int) -> str:
    key = f"{STORE_PREFIX}step/{rank}"
    return info.store.get(key).decode() if info.store.check([key]) else "none"
