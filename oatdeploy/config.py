"""TrainConfig: everything a training run depends on, and how its fields meet the command line.

Torch-free, so that `oatdeploy train` can build one option per field without importing torch
(`oatdeploy --help` runs on devices that have none). A field marked `derived` is filled in from the
dataset and the launch; `flag` metadata names an option whose name is not the field's.

A resumed run continues the checkpoint's configuration. Fields that only steer the process (where
the data lives, when to stop or save, the device, the timeout) may change, and so may --epochs (a run
trained longer: oatdeploy/resume.py); any other option given
with `--resume` must equal the checkpoint's value, or the resume is refused, naming the option.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from oatdeploy.runtime.errors import OatError

DEFAULT_LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.4, 1.0)
# The choices of a training run, defined here (torch-free) for the command line, the trainer and the models:
OBJECTIVES = ("weighted", "sampled")  # how a λ > 0 sample's two loss terms are combined (the CLI help says)
ENCODINGS = ("rand", "none", "onehot", "dct")  # how λ is fed to FiLM (oatdeploy.lambdas)
FILM_KINDS = ("linear", "mlp", "paper")  # how FiLM turns the encoding into a scale and shift (oatdeploy.nn.film)
WIDTH_RULES = ("all", "sandwich")  # which widths one step trains
DERIVED = {"derived": True}
# What a checkpoint written before a field existed was trained with (not the field's default today).
LEGACY = {"film": "mlp", "lambda_head": False, "objective": "weighted"}
MAY_CHANGE_ON_RESUME = frozenset({"out", "data_dir", "epochs", "max_steps", "save_every", "device", "dist_timeout",
                                  "channels_last", "compile", "cuda_graphs"})


@dataclass
class TrainConfig:
    """Written resolved to RUN/config.json and into the checkpoint; `oatdeploy train --config` replays it."""

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
    enc_kind: str = field(default="rand", metadata={"flag": "--encoding"})
    enc_dim: int = 128
    film: str = "linear"  # FiLM kind: linear (per-λ table), mlp (the paper's MLP, identity start), paper (its init too)
    # A per-λ correction of the classifier too; --shared-head is the paper's one classifier for every λ:
    lambda_head: bool = field(default=True, metadata={"flag": "--lambda-head/--shared-head"})
    film_lr_scale: float = 1.0  # the λ conditioning's (FiLM, per-λ classifier) learning rate as a multiple of --lr
    film_weight_decay: float | None = None  # its weight decay; None: the same as --weight-decay
    clean_share: float | None = 0.5  # λ = 0 samples per batch; None: 1 / the number of λs (the paper)
    lambda_weights: list[float] | None = None  # sampling weights of the non-zero λs; None: uniform (the paper)
    # one of OBJECTIVES, the option --loss (select's --objective is what a budget maximises); "sampled" draws its
    # terms in oatdeploy.lambdas.sample_terms
    objective: str = field(default="weighted", metadata={"flag": "--loss"})
    train_limit: int | None = None
    val_split: bool = False  # hold out the last 5,000 training images, as the paper's code does
    augment: bool = True
    dual_bn: bool = field(default=True, metadata={"flag": "--dual-bn/--single-bn"})  # False: the paper's ablation
    seed: int = 0
    save_every: int = 0
    amp: bool = True  # bf16 autocast on CUDA
    amp_cpu: bool = False  # and on CPUs that compute bf16 natively
    channels_last: bool = False  # torch 2.13's oneDNN conv backward corrupted the heap with it on a CPU
    compile: bool = False
    cuda_graphs: bool = False  # capture the step as a CUDA graph and replay it (oatdeploy/capture.py); CUDA only
    device: str = "auto"
    dist_timeout: float = 600.0
    # Filled in from the dataset and the launch:
    world_size: int = field(default=1, metadata=DERIVED)
    num_classes: int = field(default=0, metadata=DERIVED)
    input_shape: list[int] = field(default_factory=list, metadata=DERIVED)


def user_fields(config_cls: type = TrainConfig) -> list[dataclasses.Field[Any]]:
    """The fields a user sets, one option each (derived fields are left out)."""
    return [f for f in dataclasses.fields(config_cls) if not f.metadata.get("derived")]


def default_of(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def option_name(f: dataclasses.Field[Any]) -> str:
    """The option of a field: `--weight-decay` for weight_decay, or its `flag` metadata."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def option_text(f: dataclasses.Field[Any], value: Any) -> str:
    """How a user writes `value` for field `f`: `--lr 0.05`, `--widths 0.5,1`, `--no-augment`, `--single-bn`."""
    on, _, off = option_name(f).partition("/")
    if isinstance(value, bool):
        return on if value else (off or "--no-" + on.removeprefix("--"))
    if isinstance(value, list | tuple):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{on} {value}"


def changed_from_default(config: Any) -> set[str]:
    """For library callers of `train(resume=True)`: fields that differ from their default count as given."""
    return {f.name for f in user_fields(type(config)) if getattr(config, f.name) != default_of(f)}


# Lists the trainer keeps as sorted sets: `--widths 1,0.5` on a resume means what the saved [0.5, 1.0] means.
AS_SETS = frozenset({"lambdas", "widths"})


def _same(a: Any, b: Any, as_set: bool = False) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if as_set:
            a, b = sorted(set(a)), sorted(set(b))
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def contradictions(saved: Mapping[str, Any], requested: Any, given: Collection[str]) -> list[dataclasses.Field[Any]]:
    """The given fields (other than those a resume may change) whose requested value differs from the saved
    run's; a field the run predates counts with its LEGACY value, one it predates without a LEGACY value not."""
    saved = {**LEGACY, **saved}
    return [f for f in user_fields(type(requested)) if f.name in given and f.name not in MAY_CHANGE_ON_RESUME
            and f.name in saved and not _same(getattr(requested, f.name), saved[f.name], f.name in AS_SETS)]


def resumed_config(saved: Mapping[str, Any], requested: TrainConfig, given: Collection[str],
                   checkpoint: str) -> TrainConfig:
    """The checkpoint's configuration plus the given options a resume may change; contradictions are refused."""
    saved = {**LEGACY, **saved}
    fields = user_fields(type(requested))
    conflicts = contradictions(saved, requested, given)
    if conflicts:
        said = ", ".join(option_text(f, getattr(requested, f.name)) for f in conflicts)
        has = ", ".join(option_text(f, saved[f.name]) for f in conflicts)
        many = len(conflicts) > 1
        raise OatError(f"--resume: {said} {'contradict' if many else 'contradicts'} {checkpoint}, which was trained "
                       f"with {has}; drop {'them' if many else 'it'} to continue that run, or start a new run with "
                       "another --out")
    known = {f.name for f in dataclasses.fields(type(requested))}
    cfg = type(requested)(**{k: v for k, v in saved.items() if k in known})
    for f in fields:
        if f.name in given:
            setattr(cfg, f.name, getattr(requested, f.name))
    cfg.out = requested.out
    return cfg
