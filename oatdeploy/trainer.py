"""OAT / OATS training, readable in one sitting.

One step, for a batch with its λs sorted so the λ = 0 samples come first:
  for each width (OATS; one width is plain OAT):
    x_adv = PGD(model at λ, eval mode, no param grads) on the λ > 0 samples only
    loss  = mean((1 − λ)·CE(model(x)) + λ·CE(model(x_adv)))    (dual BN routes by λ)
            (--loss sampled: each λ > 0 sample keeps one term, x_adv with probability λ)
    loss.backward()                                             (gradients add up over widths)
  SGD step, cosine LR step.

Under torchrun the loss runs through DistributedDataParallel (distributed.py): its all-reduce overlaps
the last width's backward, the PGD passes go through the bare model so they never reach DDP's hooks,
and a parameter no rank used in a step keeps no gradient, exactly as in a one-process run.

Widths: every width trains every step (slimmable networks' "all widths" rule). The sandwich rule
(smallest + largest + random middle) only saves work with many widths; with the paper's 2–4 widths
it is the same set, so `all` is the default and `sandwich` is an option.

Runs stop cleanly on SIGTERM/SIGINT (preemption.py) and resume per rank (resume.py).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from oatdeploy import data as datasets
from oatdeploy import devices
from oatdeploy.attacks import PGDConfig, frozen_eval, pgd_attack
from oatdeploy.capture import GraphedStep
from oatdeploy.checkpoint import model_from_config, read_checkpoint, save_checkpoint
from oatdeploy.config import (
    FILM_KINDS,
    OBJECTIVES,
    WIDTH_RULES,
    TrainConfig,
    changed_from_default,
    resumed_config,
)
from oatdeploy.devices import to_device
from oatdeploy.distributed import (
    DistInfo,
    any_rank,
    average_buffers,
    gather_to_main,
    heartbeat,
    init_distributed,
    is_comm_failure,
    lost_rank_error,
    shutdown,
    wrap_ddp,
)
from oatdeploy.lambdas import (
    build_table,
    check_lambdas,
    check_weights,
    check_widths,
    clean_count,
    sample_indices,
    sample_terms,
)
from oatdeploy.models import OATModel
from oatdeploy.nn import SwitchableFiLM, SwitchableLambdaLinear
from oatdeploy.preemption import StopRequests, TrainingInterrupted
from oatdeploy.resume import RankStreams, continuation, rescheduled, restore_streams
from oatdeploy.runtime.atomic import atomic_write_json
from oatdeploy.runtime.errors import OatError, OatWarning, OptionError

log = logging.getLogger("oatdeploy.train")
StepHook = Callable[[int, int], None]  # (steps done, the step the run stops at)

def resolve_device(cfg: TrainConfig, info: DistInfo) -> torch.device:
    """`--device` made concrete (devices.resolve_device); under torchrun, `cuda` means this rank's GPU."""
    device = devices.resolve_device(cfg.device)
    if device.type == "cuda":
        index = info.local_rank if cfg.device in ("auto", "cuda") else device.index
        device = devices.resolve_device(f"cuda:{index}")
        torch.cuda.set_device(device)
    return device


def use_cuda_graphs(cfg: TrainConfig, device: torch.device, ddp: bool) -> bool:
    """Whether this step is captured: `cuda_graphs` on a CUDA device, one process, no torch.compile."""
    if not cfg.cuda_graphs:
        return False
    if device.type != "cuda":
        warnings.warn("--cuda-graphs captures CUDA work; on this CPU the step runs as it is, without capture",
                      stacklevel=3)
        return False
    if ddp or cfg.compile:
        raise OatError("--cuda-graphs captures the step of one process without torch.compile; drop --compile, "
                       "or drop --cuda-graphs under torchrun")
    return True


def prepare_model(model: OATModel, cfg: TrainConfig, device: torch.device) -> None:
    """Move the model to its device, in channels-last memory format if asked (inputs follow in OATStep)."""
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)


def bf16_native(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively, so that autocast pays: CUDA GPUs with bf16, and CPUs with
    AVX-512 BF16 or AMX (elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def compile_model(model: OATModel) -> nn.Module:
    """torch.compile with room for every (train/eval, width, clean split) graph a run traces."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16 * len(model.widths))
    return torch.compile(model)


def step_widths(count: int, rule: str, generator: torch.Generator) -> list[int]:
    """Width indices one step trains: all of them, or (sandwich) largest, smallest and one random middle."""
    if rule == "all" or count <= 2:
        return list(range(count))
    middle = 1 + int(torch.randint(count - 2, (1,), generator=generator))
    return [count - 1, 0, middle]


def may_leave_unused(cfg: TrainConfig, batch_size: int) -> bool:
    """Whether a step's synchronised forward (the last width's) can leave a parameter without a gradient, so that
    DDP must look for it: another width's own BN and FiLM, a BN no sample of the batch goes to, a term the sampled
    objective dropped. One width with the weighted loss uses every parameter whenever a rank's batch holds both
    λ = 0 samples and others (dual BN), or always (one BN)."""
    if len(cfg.widths) > 1 or cfg.objective != "weighted":
        return True
    n_clean = clean_count(batch_size, cfg.lambdas, cfg.clean_share)
    return cfg.dual_bn and not 0 < n_clean < batch_size


class OATObjective(nn.Module):
    """The training forward of one width: clean and adversarial passes and the loss (weighted or sampled).

    One module, so that DistributedDataParallel sees one forward per backward and finds the
    parameters a step did not use from this forward's graph.
    """

    def __init__(self, model: OATModel, dual_bn: bool) -> None:
        super().__init__()
        self.model, self.dual_bn = model, dual_bn

    def forward(self, x: torch.Tensor, x_adv: torch.Tensor | None, y: torch.Tensor, enc: torch.Tensor,
                lam: torch.Tensor, n_clean: int, width_idx: int, n_first: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The weighted objective, or with `n_first` the sampled one: the first `n_first` samples contribute
        CE(x) alone, the rest (x_adv holds them) CE(x_adv) alone."""
        if n_first is not None:
            return self.sampled(x, x_adv, y, enc, n_clean, width_idx, n_first)
        logits = self.model(x, enc, n_clean if self.dual_bn else x.shape[0], width_idx)
        per_sample = (1 - lam) * F.cross_entropy(logits.float(), y, reduction="none")
        logits_adv = None
        if x_adv is not None:
            logits_adv = self.model(x_adv, enc[n_clean:], 0 if self.dual_bn else x_adv.shape[0], width_idx)
            la = F.cross_entropy(logits_adv.float(), y[n_clean:], reduction="none")
            per_sample = per_sample + F.pad(lam[n_clean:] * la, (n_clean, 0))
        return per_sample.mean(), logits, logits_adv

    def sampled(self, x: torch.Tensor, x_adv: torch.Tensor | None, y: torch.Tensor, enc: torch.Tensor, n_clean: int,
                width_idx: int, n_first: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Summed over the batch and divided by its size, so a step's scale matches the weighted loss's; either
        pass is skipped when no sample keeps its term (a batch of λ = 1 alone has no clean pass)."""
        loss, logits, logits_adv = x.new_zeros((), dtype=torch.float32), None, None
        if n_first:
            logits = self.model(x[:n_first], enc[:n_first], n_clean if self.dual_bn else n_first, width_idx)
            loss = loss + F.cross_entropy(logits.float(), y[:n_first], reduction="sum")
        if x_adv is not None:
            logits_adv = self.model(x_adv, enc[n_first:], 0 if self.dual_bn else x_adv.shape[0], width_idx)
            loss = loss + F.cross_entropy(logits_adv.float(), y[n_first:], reduction="sum")
        return loss / x.shape[0], logits, logits_adv


@dataclass(frozen=True)
class StepPlan:
    """What a step draws on the host before any device work: each sample's λ, the split of the batch, the
    widths and the PGD random starts. Every size in it follows from the configuration (and, for `sampled`,
    one of two adversarial counts), so the device work has static shapes and the same `key` replays the
    same captured graph (capture.py)."""

    lam_idx: torch.Tensor  # [N] on the host, ordered [λ = 0 | λ > 0 (CE(x) only, for sampled) | attacked]
    n_clean: int  # λ = 0 samples: the clean BN's share
    adv_from: int  # the samples from here on are attacked
    n_first: int | None  # sampled: samples before this keep CE(x) alone; None: the weighted objective
    widths: tuple[int, ...]
    noise: torch.Tensor | None  # [len(widths), N − adv_from, C, H, W] uniform [0, 1) PGD starts, or None

    @property
    def key(self) -> tuple[tuple[int, ...], int]:
        return self.widths, self.adv_from


class OATStep:
    """The training step of the module docstring, with its RNGs, shared by `train` and `bench`.

    Host side (`plan`): every random draw, on CPU generators, so that a step is the same on any device and
    resumes exactly. Device side (`body`): static shapes and no host synchronisation (no `.item()`, no
    tensor-valued branch), so CUDA can run ahead of Python and `cfg.cuda_graphs` can capture it (capture.py).
    """

    def __init__(self, model: OATModel, cfg: TrainConfig, encoding: torch.Tensor, device: torch.device,
                 seed: int, rank: int = 0, ddp: bool = False) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.enc_table = encoding.to(device)
        self.lam_values = torch.tensor(cfg.lambdas, device=device)
        self.pgd = PGDConfig(eps=float(cfg.eps), steps=cfg.pgd_steps, step_size=cfg.step_size)
        self.streams = RankStreams.seeded(seed, rank)
        self.width_gen = torch.Generator().manual_seed(cfg.seed + 2)  # same on every rank
        self.autocast = cfg.amp and bf16_native(device) and (device.type == "cuda" or cfg.amp_cpu)
        self.channels_last = cfg.channels_last
        # The attack and the training forward share one compiled module (dynamo keeps a graph per mode and width).
        self.net = compile_model(model) if cfg.compile else model
        self.objective = OATObjective(self.net, cfg.dual_bn)
        self.ddp = wrap_ddp(self.objective, device, may_leave_unused(cfg, cfg.batch_size // cfg.world_size)) \
            if ddp else None
        self.graphs = GraphedStep(self) if use_cuda_graphs(cfg, device, ddp) else None

    def widths_for_step(self) -> list[int]:
        return step_widths(len(self.cfg.widths), self.cfg.width_rule, self.width_gen)

    def plan(self, shape: tuple[int, ...]) -> StepPlan:
        """This step's draws for a batch of `shape`, in the order today's runs have always drawn them."""
        n = shape[0]
        if self.cfg.objective == "sampled":
            lam_idx, n_clean, n_first = sample_terms(n, self.cfg.lambdas, self.streams.lam, self.cfg.clean_share,
                                                     self.cfg.lambda_weights)
            adv_from: int = n_first
        else:
            lam_idx, n_clean = sample_indices(n, self.cfg.lambdas, self.streams.lam, self.cfg.clean_share,
                                              self.cfg.lambda_weights)
            n_first, adv_from = None, n_clean
        widths = tuple(self.widths_for_step())
        noise = None
        if adv_from < n and self.pgd.random_start and self.pgd.steps > 0 and self.pgd.eps > 0:
            noise = torch.stack([torch.rand((n - adv_from, *shape[1:]), generator=self.streams.attack)
                                 for _ in widths])
        return StepPlan(lam_idx, n_clean, adv_from, n_first, widths, noise)

    def attack(self, x: torch.Tensor, y: torch.Tensor, enc: torch.Tensor, width_idx: int,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """PGD through the bare model (never DDP's hooks), eval mode, no parameter gradients."""
        bn_split = 0 if self.cfg.dual_bn else x.shape[0]
        with frozen_eval(self.model), self.autocast_ctx():
            return pgd_attack(lambda z: self.net(z, enc, bn_split, width_idx), x, y, self.pgd,
                              generator=self.streams.attack, noise=noise)

    def autocast_ctx(self) -> torch.autocast:
        # A captured graph must not reuse autocast's cast-weight cache across replays (torch.cuda.graph's rule).
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast,
                              cache_enabled=not self.cfg.cuda_graphs)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward/backward over the step's widths; leaves gradients in the model (no optimizer step).
        Returns the loss (summed over widths) and the last width's SA/RA as device tensors: reading them
        (float()) waits for the device, so the caller does it only when it logs."""
        plan = self.plan(tuple(x.shape))
        if self.graphs is not None:
            return self.graphs.run(x, y, plan)
        return self.body(to_device(x, self.device), to_device(y, self.device), to_device(plan.lam_idx, self.device),
                         None if plan.noise is None else to_device(plan.noise, self.device), plan)

    def body(self, x: torch.Tensor, y: torch.Tensor, lam_idx: torch.Tensor, noise: torch.Tensor | None,
             plan: StepPlan) -> dict[str, torch.Tensor]:
        """The device work of a step on device tensors; every shape comes from `plan`'s integers."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lam, enc = self.lam_values[lam_idx], self.enc_table[lam_idx]
        adv_from, n = plan.adv_from, x.shape[0]
        total, stats = torch.zeros((), device=x.device), {}
        for i, w in enumerate(plan.widths):
            x_adv = None
            if adv_from < n:
                x_adv = self.attack(x[adv_from:], y[adv_from:], enc[adv_from:], w, None if noise is None else noise[i])
            forward = self.ddp or self.objective
            # DDP all-reduces once, after the last width's backward; earlier widths accumulate locally.
            sync = contextlib.nullcontext() if self.ddp is None or i == len(plan.widths) - 1 else self.ddp.no_sync()
            with sync:
                with self.autocast_ctx():
                    loss, logits, logits_adv = forward(x, x_adv, y, enc, lam, plan.n_clean, w, plan.n_first)
                loss.backward()
            total = total + loss.detach()
            stats = {}  # with the sampled objective SA is over the samples that kept their clean term
            if logits is not None:
                stats["sa"] = (logits.detach().argmax(1) == y[: logits.shape[0]]).float().mean()
            if logits_adv is not None:
                stats["ra"] = (logits_adv.detach().argmax(1) == y[adv_from:]).float().mean()
        return {"loss": total, **stats}


def make_optimizer(model: OATModel, cfg: TrainConfig, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with the λ conditioning (FiLM and the classifier's per-λ correction) in its own group (its own
    learning rate and weight decay)."""
    film = {id(p): p for m in model.modules() if isinstance(m, (SwitchableFiLM, SwitchableLambdaLinear))
            for p in m.parameters()}
    rest = [p for p in model.parameters() if id(p) not in film]
    film_wd = cfg.weight_decay if cfg.film_weight_decay is None else cfg.film_weight_decay
    groups = [{"params": rest},
              {"params": list(film.values()), "lr": cfg.lr * cfg.film_lr_scale, "weight_decay": film_wd}]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=False)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return opt, sched


def resolve_config(cfg: TrainConfig, train: datasets.ArrayDataset, world_size: int) -> TrainConfig:
    # --lambda-weights follow --lambdas as given; the λs are then sorted, and the weights with them.
    given = [float(v) for v in cfg.lambdas if float(v) != 0.0]
    weights = {} if cfg.lambda_weights is None else dict(
        zip(given, check_weights(cfg.lambda_weights, given), strict=True))
    cfg.lambdas = check_lambdas(cfg.lambdas)
    cfg.widths = check_widths(cfg.widths)
    if cfg.lambda_weights is not None:
        cfg.lambda_weights = [weights[v] for v in cfg.lambdas if v != 0.0]
    if cfg.film not in FILM_KINDS:
        raise OatError(f"--film must be one of {', '.join(FILM_KINDS)}, got {cfg.film!r}")
    if cfg.film_lr_scale <= 0 or (cfg.film_weight_decay is not None and cfg.film_weight_decay < 0):
        raise OatError("--film-lr-scale must be positive and --film-weight-decay non-negative")
    if cfg.objective not in OBJECTIVES:
        raise OatError(f"--loss must be one of {', '.join(OBJECTIVES)}, got {cfg.objective!r}")
    if cfg.width_rule not in WIDTH_RULES:
        raise OatError(f"--width-rule must be one of {', '.join(WIDTH_RULES)}, got {cfg.width_rule!r}")
    if cfg.batch_size < 2:
        raise OatError(f"--batch-size must be at least 2, got {cfg.batch_size}")
    if cfg.batch_size % world_size or cfg.batch_size // world_size < 2:
        raise OatError(f"--batch-size {cfg.batch_size} is the global batch and must split into at least 2 samples "
                       f"for each of the {world_size} processes; use a multiple of {world_size}, at least "
                       f"{2 * world_size}")
    if cfg.epochs < 1:
        raise OatError(f"--epochs must be at least 1, got {cfg.epochs}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise OatError(f"--max-steps must be at least 1, got {cfg.max_steps}")
    cfg.eps = train.eps if cfg.eps is None else cfg.eps
    if not 0 <= cfg.eps <= 1:
        raise OatError(f"--eps is an L∞ radius on [0, 1] pixels and must lie in [0, 1], got {cfg.eps}")
    cfg.num_classes = train.num_classes
    cfg.input_shape = list(train.input_shape)
    cfg.world_size = world_size
    if cfg.enc_kind == "none":
        cfg.enc_dim = 1
    return cfg


def setup_logging(out: Path, is_main: bool) -> logging.Handler | None:
    """This run's train.log. `train` removes it when the run ends, so that a later run in the same process (a
    study script, a test session) does not write into this run's log."""
    if not is_main:
        return None
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


class Run:
    """One training run on this rank: model, optimizer, data order and random streams, from scratch or a checkpoint."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, train_set: datasets.ArrayDataset,
                 payload: dict[str, Any] | None) -> None:
        self.cfg, self.info, self.train_set = cfg, info, train_set
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / "supernet.pt"
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg, info)
        self.encoding = payload["encoding"] if payload else build_table(cfg.enc_kind, cfg.lambdas, cfg.enc_dim,
                                                                        cfg.seed)
        self.model = model_from_config(asdict(cfg))
        if payload:
            self.model.load_state_dict(payload["model"])
        prepare_model(self.model, cfg, self.device)

        self.sampler = torch.utils.data.DistributedSampler(range(len(train_set)), num_replicas=info.world_size,
                                                           rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        self.per_rank_batch = cfg.batch_size // info.world_size
        self.steps_per_epoch = len(self.sampler) // self.per_rank_batch
        if self.steps_per_epoch < 1:
            raise OatError(f"the dataset has {len(train_set)} training samples, fewer than one batch of "
                           f"{cfg.batch_size}; lower --batch-size")
        total_steps = cfg.epochs * self.steps_per_epoch
        self.stop_at = min(total_steps, cfg.max_steps or total_steps)
        self.opt, self.sched = make_optimizer(self.model, cfg, total_steps)
        self.step_fn = OATStep(self.model, cfg, self.encoding, self.device, seed=cfg.seed, rank=info.rank,
                               ddp=info.distributed)
        self.step = self.resumed_at = 0
        self.resume_note, self.streams_note = "", None
        if payload:
            state = payload["trainer"]
            self.opt.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            saved_total = int(state["scheduler"].get("T_max", total_steps))
            self.resumed_at, self.resume_note = self.step, continuation(self.step, self.stop_at, total_steps,
                                                                        saved_total, cfg.max_steps)
            if saved_total == total_steps:
                self.sched.load_state_dict(state["scheduler"])
            else:
                self.sched = rescheduled(self.opt, total_steps, self.step)
            self.step_fn.width_gen.set_state(state["width_gen"])
            self.step_fn.streams, self.streams_note = restore_streams(state, cfg.seed, info.rank, info.world_size,
                                                                      self.step)

    def trainer_state(self) -> dict[str, Any] | None:
        """Optimizer, schedule, step and every rank's random streams (on rank 0; None on the others)."""
        streams = self.step_fn.streams.state()
        per_rank = gather_to_main(streams, self.info) if self.info.distributed else [streams]
        if not self.info.is_main:
            return None
        return {"step": self.step, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "width_gen": self.step_fn.width_gen.get_state(), "world_size": self.info.world_size,
                "rank_streams": per_rank}

    def save(self) -> None:
        """Every rank calls this (their streams are gathered); rank 0 writes, atomically."""
        state = self.trainer_state()
        if state is not None:
            save_checkpoint(self.ckpt_path, self.model, asdict(self.cfg), self.encoding, state)

    def train_step(self, order: torch.Tensor, b: int) -> dict[str, torch.Tensor]:
        idx = order[b * self.per_rank_batch : (b + 1) * self.per_rank_batch]
        x, y = self.train_set.x[idx], self.train_set.y[idx]
        if self.cfg.augment:
            x = self.train_set.augment(x, self.step_fn.streams.aug)
        self.opt.zero_grad(set_to_none=True)
        stats = self.step_fn(x, y)
        self.opt.step()
        self.sched.step()
        if self.info.distributed:
            average_buffers(self.model, self.info.world_size)
        self.step += 1
        return stats

    def stop_requested(self, stop: StopRequests) -> int:
        """The signal to stop on, agreed by every rank so that all of them save the same step."""
        if not self.info.distributed:
            return stop.signum
        heartbeat(self.info, self.step)
        return any_rank(stop.signum, self.device)

    def run(self, stop: StopRequests, progress: bool, on_step: StepHook | None = None) -> Path:
        cfg, info = self.cfg, self.info
        self.model.train()
        t0 = time.perf_counter()
        # The bar ends its line however the loop ends, so an error or the resume hint starts a line of its own.
        with tqdm(total=self.stop_at, initial=self.step, desc="train", unit="step",
                  disable=not (progress and info.is_main)) as bar:
            while self.step < self.stop_at:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                self.sampler.set_epoch(epoch)
                order = torch.tensor(list(self.sampler), dtype=torch.long)
                for b in range(in_epoch, self.steps_per_epoch):
                    stats = self.train_step(order, b)
                    bar.update(1)
                    if on_step is not None:
                        on_step(self.step, self.stop_at)
                    # Reading the step's figures waits for the device: only every 20 steps, not every step.
                    if info.is_main and (self.step % 20 == 0 or self.step == self.stop_at):
                        got = {k: float(v) for k, v in stats.items()}
                        bar.set_postfix(loss=f"{got['loss']:.3f}", sa=f"{got.get('sa', math.nan):.2f}",
                                        ra=f"{got.get('ra', 0):.2f}")
                        log.info("epoch %d step %d/%d loss %.4f sa %.3f ra %.3f lr %.4g", epoch, self.step,
                                 self.stop_at, got["loss"], got.get("sa", math.nan), got.get("ra", math.nan),
                                 self.sched.get_last_lr()[0])
                    if self.step >= self.stop_at:
                        break
                    signum = self.stop_requested(stop)
                    if signum:
                        self.save()
                        if info.is_main:
                            log.info("stopped by signal %d after step %d/%d; checkpoint written", signum, self.step,
                                     self.stop_at)
                        raise TrainingInterrupted(signum, self.step, self.stop_at, str(self.ckpt_path))
                    if cfg.save_every and self.step % cfg.save_every == 0:
                        self.save()
                if self.step < self.stop_at:
                    self.save()
        self.save()
        if info.is_main:
            since = f" (resumed at step {self.resumed_at})" if self.resume_note else ""
            log.info("done: %d steps%s; %d run in %.1f s", self.step, since, self.step - self.resumed_at,
                     time.perf_counter() - t0)
        return self.ckpt_path


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          given: Collection[str] | None = None, on_step: StepHook | None = None) -> Path:
    """Train a supernet; returns the checkpoint path (RUN/supernet.pt).

    `resume` continues RUN/supernet.pt; `given` names the fields the caller set on purpose (the CLI
    passes the options on its command line; by default, fields that differ from TrainConfig's defaults),
    and any of them that contradicts the checkpoint is refused. SIGTERM/SIGINT end the current step,
    write the checkpoint and raise TrainingInterrupted; a rank that stops answering raises RankLost.
    `on_step(step, last_step)` is called after every step (the demo estimates its time left from it).
    """
    out = Path(cfg.out)
    payload = None
    if resume:
        ckpt = out / "supernet.pt"
        if not ckpt.is_file():
            raise OatError(f"--resume: no checkpoint at {ckpt}; start without --resume")
        payload = read_checkpoint(ckpt)
        given = changed_from_default(cfg) if given is None else given
        cfg = resumed_config(payload["config"], cfg, given, str(ckpt))
        if "data_dir" not in given:
            cfg.data_dir = datasets.data_dir_for(None, payload["config"])
    train_set = datasets.load_dataset(cfg.dataset, data_dir=cfg.data_dir, split="train", limit=cfg.train_limit,
                                      val_split=cfg.val_split)
    if cfg.dist_timeout <= 0:
        raise OatError(f"--dist-timeout is in seconds and must be positive, got {cfg.dist_timeout}")
    info = init_distributed(cfg.dist_timeout, devices.resolve_device(cfg.device).type)
    run: Run | None = None
    handler: logging.Handler | None = None
    clean_exit = False
    try:
        with StopRequests(announce=info.is_main) as stop:
            try:  # a bad option stops here, on every rank alike, before the run folder is touched
                cfg = resolve_config(cfg, train_set, info.world_size)
                run = Run(cfg, info, train_set, payload)
            except OatError as e:
                raise OptionError(str(e)) from None
            out.mkdir(parents=True, exist_ok=True)
            handler = setup_logging(out, info.is_main)
            if info.is_main:
                atomic_write_json(out / "config.json", asdict(cfg))
                log.info("config %s", json.dumps(asdict(cfg)))
                if run.resume_note:
                    log.info("%s", run.resume_note)
                if run.streams_note:
                    log.warning("%s", run.streams_note)
                if run.resume_note and run.step >= run.stop_at:
                    warnings.warn(run.resume_note, OatWarning, stacklevel=2)
            path = run.run(stop, progress, on_step)
        clean_exit = True
        return path
    except TrainingInterrupted:
        clean_exit = True
        raise
    except RuntimeError as e:
        if not (info.distributed and is_comm_failure(e)):
            raise
        raise lost_rank_error(info, run.step if run else -1, e) from None
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        if info.distributed:
            run = None  # DDP's reducer holds the group: it must go while the group is still registered
            gc.collect()
        shutdown(info, clean_exit)
