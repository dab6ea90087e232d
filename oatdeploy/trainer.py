"""OAT / OATS training, readable in one sitting.

One step, for a batch with its λs sorted so the λ = 0 samples come first:
  for each width (OATS; one width is plain OAT):
    x_adv = PGD(model at λ, eval mode, no param grads) on the λ > 0 samples only
    loss  = mean((1 − λ)·CE(model(x)) + λ·CE(model(x_adv)))    (dual BN routes by λ)
    loss.backward()                                             (gradients add up over widths)
  all-reduce the gradients (torchrun), SGD step, cosine LR step.

Widths: every width trains every step (slimmable networks' "all widths" rule). The sandwich rule
(smallest + largest + random middle) only saves work with many widths; with the paper's 2–4 widths
it is the same set, so `all` is the default and `sandwich` is an option.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from oatdeploy import data as datasets
from oatdeploy.atomic import atomic_write_json
from oatdeploy.attacks import PGDConfig, frozen_eval, pgd_attack
from oatdeploy.checkpoint import model_from_config, read_checkpoint, save_checkpoint
from oatdeploy.errors import OatError
from oatdeploy.lambdas import (
    DEFAULT_LAMBDAS,
    build_table,
    check_lambdas,
    check_weights,
    check_widths,
    sample_indices,
)
from oatdeploy.models import OATModel
from oatdeploy.nn import FILM_KINDS, SwitchableFiLM

log = logging.getLogger("oatdeploy.train")


@dataclass
class TrainConfig:
    """Everything a run depends on; written resolved to RUN/config.json and into the checkpoint."""

    out: str = "runs/oat"
    dataset: str = "fmnist-mini"
    data_dir: str | None = None
    arch: str = "resnet20"
    lambdas: list[float] = field(default_factory=lambda: list(DEFAULT_LAMBDAS))
    widths: list[float] = field(default_factory=lambda: [1.0])
    width_rule: str = "all"
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eps: float | None = None
    pgd_steps: int = 7
    step_size: float | None = None
    enc_kind: str = "rand"
    enc_dim: int = 128
    film: str = "linear"  # FiLM kind: linear (per-λ table), mlp (the paper's MLP, identity start), paper (its init too)
    film_lr_scale: float = 10.0  # FiLM's learning rate as a multiple of --lr (each λ's row sees a fraction of the data)
    film_weight_decay: float | None = 0.0  # None: the same as --weight-decay
    clean_share: float | None = None
    lambda_weights: list[float] | None = None  # sampling weights of the non-zero λs; None: uniform (the paper)
    train_limit: int | None = None
    val_split: bool = False  # hold out the last 5,000 training images, as the paper's code does
    augment: bool = True
    dual_bn: bool = True  # False: every sample uses the clean BN (the paper's ablation)
    seed: int = 0
    save_every: int = 0
    amp: bool = True
    world_size: int = 1
    device: str = "auto"
    # Filled in from the dataset:
    num_classes: int = 0
    input_shape: list[int] = field(default_factory=list)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we created the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """torchrun sets WORLD_SIZE/RANK; use gloo on CPU and nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    owns = not dist.is_initialized()
    if owns:
        # torch.optim imports torch._dynamo on the first optimizer; done while a group exists, that import
        # leaves references to the group that destroy_process_group() cannot drop, so gloo's worker threads
        # outlive it and may free their last work (holding our tensors) during interpreter shutdown, which
        # aborts the process ("terminate called without an active exception", about 1 run in 40).
        importlib.import_module("torch._dynamo")
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def resolve_device(cfg: TrainConfig, info: DistInfo) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def sync_gradients(model: OATModel, world_size: int) -> None:
    """Average gradients over ranks in one flat all-reduce (missing grads count as zero)."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p)
        offset += n


def sync_buffers(model: OATModel, world_size: int) -> None:
    """Average BN running statistics over ranks before a save (each rank saw its own shard)."""
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf /= world_size


class OATStep:
    """The training step of the module docstring, with its RNGs, shared by `train` and `bench`."""

    def __init__(self, model: OATModel, cfg: TrainConfig, encoding: torch.Tensor, device: torch.device,
                 seed: int) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.enc_table = encoding.to(device)
        self.lam_values = torch.tensor(cfg.lambdas, device=device)
        self.pgd = PGDConfig(eps=float(cfg.eps), steps=cfg.pgd_steps, step_size=cfg.step_size)
        self.lam_gen = torch.Generator().manual_seed(seed)
        self.attack_gen = torch.Generator().manual_seed(seed + 1)
        self.width_gen = torch.Generator().manual_seed(cfg.seed + 2)  # same on every rank
        self.autocast = device.type == "cuda" and cfg.amp
        self.channels_last = device.type == "cuda"

    def widths_for_step(self) -> list[int]:
        n = len(self.cfg.widths)
        if self.cfg.width_rule == "all" or n <= 2:
            return list(range(n))
        middle = 1 + int(torch.randint(n - 2, (1,), generator=self.width_gen))
        return [n - 1, 0, middle]

    def bn_split(self, n_clean: int, x: torch.Tensor) -> int:
        """How many leading samples take the clean BN: all of them when dual BN is ablated."""
        return n_clean if self.cfg.dual_bn else x.shape[0]

    def loss(self, x: torch.Tensor, y: torch.Tensor, width_idx: int, lam_idx: torch.Tensor,
             n_clean: int) -> tuple[torch.Tensor, dict[str, float]]:
        lam = self.lam_values[lam_idx]
        enc = self.enc_table[lam_idx]
        n_adv = x.shape[0] - n_clean
        x_adv = None
        if n_adv > 0:
            with frozen_eval(self.model), torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
                x_adv = pgd_attack(lambda z: self.model(z, enc[n_clean:], self.bn_split(0, z), width_idx), x[n_clean:],
                                   y[n_clean:], self.pgd, generator=self.attack_gen)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
            logits = self.model(x, enc, self.bn_split(n_clean, x), width_idx)
            per_sample = (1 - lam) * F.cross_entropy(logits.float(), y, reduction="none")
            stats = {"sa": float((logits.argmax(1) == y).float().mean())}
            if x_adv is not None:
                logits_adv = self.model(x_adv, enc[n_clean:], self.bn_split(0, x_adv), width_idx)
                la = F.cross_entropy(logits_adv.float(), y[n_clean:], reduction="none")
                per_sample = per_sample + F.pad(lam[n_clean:] * la, (n_clean, 0))
                stats["ra"] = float((logits_adv.argmax(1) == y[n_clean:]).float().mean())
        return per_sample.mean(), stats

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Forward/backward over the step's widths; leaves gradients in the model (no optimizer step)."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lam_idx, n_clean = sample_indices(x.shape[0], self.cfg.lambdas, self.lam_gen, self.cfg.clean_share,
                                          self.cfg.lambda_weights)
        lam_idx = lam_idx.to(self.device)
        total, stats = 0.0, {}
        for w in self.widths_for_step():
            loss, stats = self.loss(x, y, w, lam_idx, n_clean)
            loss.backward()
            total += loss.item()
        return {"loss": total, **stats}


def make_optimizer(model: OATModel, cfg: TrainConfig, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with FiLM's parameters in their own group (its own learning rate and weight decay)."""
    film = {id(p): p for m in model.modules() if isinstance(m, SwitchableFiLM) for p in m.parameters()}
    rest = [p for p in model.parameters() if id(p) not in film]
    film_wd = cfg.weight_decay if cfg.film_weight_decay is None else cfg.film_weight_decay
    groups = [{"params": rest},
              {"params": list(film.values()), "lr": cfg.lr * cfg.film_lr_scale, "weight_decay": film_wd}]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=False)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    return opt, sched


def resolve_config(cfg: TrainConfig, train: datasets.ArrayDataset, world_size: int) -> TrainConfig:
    cfg.lambdas = check_lambdas(cfg.lambdas)
    cfg.widths = check_widths(cfg.widths)
    cfg.lambda_weights = check_weights(cfg.lambda_weights, cfg.lambdas)
    if cfg.film not in FILM_KINDS:
        raise OatError(f"--film must be one of {', '.join(FILM_KINDS)}, got {cfg.film!r}")
    if cfg.film_lr_scale <= 0 or (cfg.film_weight_decay is not None and cfg.film_weight_decay < 0):
        raise OatError("--film-lr-scale must be positive and --film-weight-decay non-negative")
    if cfg.width_rule not in ("all", "sandwich"):
        raise OatError(f"--width-rule must be 'all' or 'sandwich', got {cfg.width_rule!r}")
    if cfg.batch_size < 2:
        raise OatError(f"--batch-size must be at least 2, got {cfg.batch_size}")
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


def setup_logging(out: Path, is_main: bool) -> None:
    if not is_main:
        return
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train a supernet; returns the checkpoint path (RUN/supernet.pt)."""
    info = init_distributed()
    out = Path(cfg.out)
    ckpt_path = out / "supernet.pt"
    state: dict[str, Any] = {}
    if resume:
        if not ckpt_path.is_file():
            raise OatError(f"--resume: no checkpoint at {ckpt_path}; start without --resume")
        payload = read_checkpoint(ckpt_path)
        cfg = TrainConfig(**{**payload["config"], "out": str(out), "max_steps": cfg.max_steps})
        state = payload["trainer"]
    train_set = datasets.load_dataset(cfg.dataset, data_dir=cfg.data_dir, split="train", limit=cfg.train_limit,
                                      val_split=cfg.val_split)
    cfg = resolve_config(cfg, train_set, info.world_size)
    out.mkdir(parents=True, exist_ok=True)
    setup_logging(out, info.is_main)

    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg, info)
    encoding = payload["encoding"] if resume else build_table(cfg.enc_kind, cfg.lambdas, cfg.enc_dim, cfg.seed)
    model = model_from_config(asdict(cfg))
    if resume:
        model.load_state_dict(payload["model"])
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)

    sampler = torch.utils.data.DistributedSampler(range(len(train_set)), num_replicas=info.world_size,
                                                  rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=True)
    per_rank_batch = max(2, cfg.batch_size // info.world_size)
    steps_per_epoch = len(sampler) // per_rank_batch
    if steps_per_epoch < 1:
        raise OatError(f"the dataset has {len(train_set)} training samples, fewer than one batch of "
                       f"{cfg.batch_size}; lower --batch-size")
    total_steps = cfg.epochs * steps_per_epoch
    stop_at = min(total_steps, cfg.max_steps or total_steps)
    opt, sched = make_optimizer(model, cfg, total_steps)
    step_fn = OATStep(model, cfg, encoding, device, seed=cfg.seed + 1000 * info.rank)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 7 + 1000 * info.rank)
    step = 0
    if resume:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        for gen, key in ((step_fn.lam_gen, "lam_gen"), (step_fn.attack_gen, "attack_gen"),
                         (step_fn.width_gen, "width_gen"), (aug_gen, "aug_gen")):
            gen.set_state(state[key])
    if info.is_main:
        atomic_write_json(out / "config.json", asdict(cfg))
        log.info("config %s", json.dumps(asdict(cfg)))

    def save() -> None:
        if info.world_size > 1:
            sync_buffers(model, info.world_size)
        if info.is_main:
            trainer_state = {
                "step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "lam_gen": step_fn.lam_gen.get_state(), "attack_gen": step_fn.attack_gen.get_state(),
                "width_gen": step_fn.width_gen.get_state(), "aug_gen": aug_gen.get_state(),
            }
            save_checkpoint(ckpt_path, model, asdict(cfg), encoding, trainer_state)

    bar = tqdm(total=stop_at, initial=step, desc="train", unit="step", disable=not (progress and info.is_main))
    model.train()
    t0 = time.perf_counter()
    while step < stop_at:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long)
        for b in range(in_epoch, steps_per_epoch):
            idx = order[b * per_rank_batch : (b + 1) * per_rank_batch]
            x, y = train_set.x[idx], train_set.y[idx]
            if cfg.augment:
                x = train_set.augment(x, aug_gen)
            opt.zero_grad(set_to_none=True)
            stats = step_fn(x, y)
            if info.world_size > 1:
                sync_gradients(model, info.world_size)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.3f}", sa=f"{stats['sa']:.2f}", ra=f"{stats.get('ra', 0):.2f}")
            if info.is_main and (step % 20 == 0 or step == stop_at):
                log.info("epoch %d step %d/%d loss %.4f sa %.3f ra %.3f lr %.4g", epoch, step, stop_at,
                         stats["loss"], stats["sa"], stats.get("ra", math.nan), sched.get_last_lr()[0])
            if step >= stop_at:
                break
            if cfg.save_every and step % cfg.save_every == 0:
                save()
        if step < stop_at:
            save()
    bar.close()
    save()
    if info.is_main:
        log.info("done: %d steps in %.1f s", step, time.perf_counter() - t0)
    if info.owns_group:
        # Every rank waits for rank 0's checkpoint; exiting with a live gloo group aborts the process.
        dist.barrier()
        dist.destroy_process_group()
    return ckpt_path
