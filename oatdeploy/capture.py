"""`cuda_graphs`: the training step captured once as a CUDA graph and replayed (torch.cuda.CUDAGraph).

At batch 128 a ResNet step is launch-bound on a GPU: thousands of small kernels (PGD's forward and backward
passes, then the training forward and backward) that the GPU finishes faster than Python issues them. A
graph records those launches once and replays them with one call. What that needs, and how it is met:

- Static shapes and addresses: the step's inputs are copied into buffers that live as long as the graph
  (`Buffers`); the clean/adversarial split is fixed by the configuration (`sampled` has two adversarial
  counts: lambdas.sample_terms), so a run has one graph per (widths, split, batch shape), captured on
  first use.
- No random draw and no host synchronisation inside: the trainer draws λs and PGD starts on the host
  (OATStep.plan) and the step body reads nothing back.
- Warm-up on a side stream before capture (cuDNN and autograd set themselves up there, as torch's docs ask);
  the warm-up's BN statistics are put back, so the first replay is the step that a run without capture
  takes.
- Gradients: backward inside the capture allocates each parameter's gradient in the graph's memory and
  replay overwrites them, so the optimizer step stays outside the graph (its learning rate changes every
  step); `run` points each `.grad` at this graph's tensors after a replay, so `zero_grad(set_to_none=True)`
  before a step changes nothing.
- Autocast's cast-weight cache is off in a captured step (OATStep.autocast_ctx).

CUDA only, one process, without torch.compile (trainer.use_cuda_graphs says so); on a CPU the same body
runs eagerly. `benchmarks/gpu_check.py` exercises this path; it does not run on the CPU test machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

WARMUP = 3  # torch's docs warm up a few iterations; DDP would need 11, but capture runs without it


class Plan(Protocol):
    """What the step drew on the host (trainer.StepPlan)."""

    lam_idx: torch.Tensor
    noise: torch.Tensor | None

    @property
    def key(self) -> tuple[tuple[int, ...], int]: ...


class Step(Protocol):
    """The eager step that is captured (trainer.OATStep)."""

    model: nn.Module
    device: torch.device

    def body(self, x: torch.Tensor, y: torch.Tensor, lam_idx: torch.Tensor, noise: torch.Tensor | None,
             plan: Any) -> dict[str, torch.Tensor]: ...


@dataclass
class Buffers:
    """The step's inputs at fixed device addresses, refilled from the host before every replay."""

    x: torch.Tensor
    y: torch.Tensor
    lam_idx: torch.Tensor
    noise: torch.Tensor | None

    @classmethod
    def like(cls, x: torch.Tensor, y: torch.Tensor, plan: Plan, device: torch.device) -> Buffers:
        noise = None if plan.noise is None else torch.empty(plan.noise.shape, device=device)
        return cls(torch.empty(x.shape, dtype=x.dtype, device=device), torch.empty(y.shape, dtype=y.dtype,
                   device=device), torch.empty(plan.lam_idx.shape, dtype=torch.long, device=device), noise)

    def load(self, x: torch.Tensor, y: torch.Tensor, plan: Plan) -> None:
        """Asynchronous copies from pinned host memory, ordered before the replay on the same stream."""
        pairs = [(self.x, x), (self.y, y), (self.lam_idx, plan.lam_idx)]
        if self.noise is not None and plan.noise is not None:
            pairs.append((self.noise, plan.noise))
        for static, value in pairs:
            static.copy_(value.pin_memory() if value.device.type == "cpu" else value, non_blocking=True)


@dataclass
class Captured:
    graph: torch.cuda.CUDAGraph
    buffers: Buffers
    outputs: dict[str, torch.Tensor]
    grads: list[torch.Tensor | None]  # per parameter, allocated by the captured backward (None: unused)


class GraphedStep:
    """Replays the captured step body for each plan; captures it the first time a plan's shapes appear."""

    def __init__(self, step: Step) -> None:
        self.step = step
        self.params = [p for p in step.model.parameters() if p.requires_grad]
        self.graphs: dict[Any, Captured] = {}

    def run(self, x: torch.Tensor, y: torch.Tensor, plan: Plan) -> dict[str, torch.Tensor]:
        key = (plan.key, tuple(x.shape))
        if key not in self.graphs:
            self.graphs[key] = self.capture(x, y, plan)
        cap = self.graphs[key]
        cap.buffers.load(x, y, plan)
        cap.graph.replay()
        for p, g in zip(self.params, cap.grads, strict=True):
            p.grad = g
        return {k: v.clone() for k, v in cap.outputs.items()}  # the next replay overwrites the graph's own

    def capture(self, x: torch.Tensor, y: torch.Tensor, plan: Plan) -> Captured:
        device, model = self.step.device, self.step.model
        buffers = Buffers.like(x, y, plan, device)
        buffers.load(x, y, plan)
        saved = {name: b.detach().clone() for name, b in model.named_buffers()}

        def body() -> dict[str, torch.Tensor]:
            return self.step.body(buffers.x, buffers.y, buffers.lam_idx, buffers.noise, plan)

        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                for p in self.params:
                    p.grad = None
                body()
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():  # the warm-up moved the BN statistics: the first replay is the real step
            for name, b in model.named_buffers():
                b.copy_(saved[name])
        for p in self.params:
            p.grad = None  # so that the captured backward allocates (and replay overwrites) this graph's own
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = body()
        return Captured(graph, buffers, outputs, [p.grad for p in self.params])
