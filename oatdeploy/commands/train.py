"""`oatdeploy train`: OAT (one width) or OATS (several widths) supernet training.

Every TrainConfig field is an option, derived from the field (name, type, default); SPECS adds
help and narrower types. A field added to TrainConfig gets its option from its annotation alone,
and tests/test_cli.py asks for a help line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from oatdeploy.commands.config_options import DEVICE_HELP, LazyChoice, architectures, config_options, datasets
from oatdeploy.config import (
    ENCODINGS,
    FILM_KINDS,
    MAY_CHANGE_ON_RESUME,
    OBJECTIVES,
    WIDTH_RULES,
    TrainConfig,
    option_name,
    user_fields,
)
from oatdeploy.runtime.commands.options import Command, quiet_option

SPECS: dict[str, dict[str, Any]] = {
    "out": {"type": click.Path(file_okay=False), "required": True, "help": "Run folder."},
    "dataset": {"type": LazyChoice(datasets),
                "help": "fmnist-mini (embedded), fashion-mnist (IDX files), cifar10 (python batches), svhn (.mat "
                        "files) or stl10 (binary files)."},
    "data_dir": {"type": click.Path(file_okay=False),
                 "help": "Folder with the dataset files (fashion-mnist defaults to Debian's path)."},
    "arch": {"type": LazyChoice(architectures), "help": "The supernet (oatdeploy.models.list_models())."},
    "lambdas": {"help": "λ choices (0 = clean training, 1 = pure adversarial training)."},
    "widths": {"help": "Width fractions; more than one trains an OATS (slimmable) supernet."},
    "width_rule": {"type": click.Choice(WIDTH_RULES),
                   "help": "Widths per step: all of them, or largest + smallest + one random middle."},
    "epochs": {"type": click.IntRange(min=1),
               "help": "Passes over the training set (sets the cosine schedule); with --resume, a larger value "
                       "trains the run longer."},
    "max_steps": {"type": click.IntRange(min=1),
                  "help": "Stop after this many steps (the schedule keeps --epochs); with --resume, a larger "
                          "value trains the run longer."},
    "batch_size": {"type": click.IntRange(min=2), "help": "Global batch: split evenly over the processes."},
    "lr": {"type": click.FloatRange(min=0, min_open=True), "help": "Peak SGD learning rate (cosine to 0)."},
    "momentum": {"type": click.FloatRange(0, 1, max_open=True), "help": "SGD momentum."},
    "weight_decay": {"type": click.FloatRange(min=0), "help": "SGD weight decay."},
    "eps": {"type": click.FloatRange(0, 1),
            "help": "L∞ radius on [0,1] pixels (default: the dataset's preset, 0.1 Fashion-MNIST, 8/255 CIFAR)."},
    "pgd_steps": {"type": click.IntRange(min=0), "help": "PGD steps for training's adversarial examples."},
    "step_size": {"type": click.FloatRange(min=0, min_open=True),
                  "help": "PGD step size (default: min(1.25·eps, eps + 4/255) / steps, the paper's)."},
    "enc_kind": {"type": click.Choice(ENCODINGS), "help": "λ encoding fed to FiLM."},
    "enc_dim": {"type": click.IntRange(min=1), "help": "Length of the λ encoding (at least the number of λs)."},
    "film": {"type": click.Choice(FILM_KINDS),
             "help": "How λ sets FiLM's scale and shift: linear (a learned row per λ, the default), mlp (the paper's "
                     "two-layer MLP of the encoding, starting at the identity) or paper (that MLP, the paper's init)."},
    "lambda_head": {"help": "A learned correction of the classifier per λ as well (the default): with half of "
                            "every batch at λ = 0 it is what brings the clean end to standard training "
                            "(docs/knob.md); --shared-head is the paper's one classifier for every λ."},
    "film_lr_scale": {"type": click.FloatRange(min=0, min_open=True),
                      "help": "The λ conditioning's (FiLM's and the classifier's per-λ correction's) learning rate "
                              "as a multiple of --lr."},
    "film_weight_decay": {"type": click.FloatRange(min=0),
                          "default": None, "help": "The λ conditioning's weight decay (default: --weight-decay's)."},
    "lambda_weights": {"help": "Sampling weights of the λ > 0 choices, in --lambdas order (default: uniform)."},
    "objective": {"type": click.Choice(OBJECTIVES),
                  "help": "weighted: every λ > 0 sample's loss is (1 − λ)·CE(x) + λ·CE(x_adv), as in the paper; "
                          "sampled: one of the two terms, the adversarial one with probability λ — the same "
                          "expected loss with fewer PGD examples and forward passes (docs/knob.md)."},
    "clean_share": {"type": click.FloatRange(0, 1),
                    "help": "Share of λ = 0 samples per batch: half by default, which brings the clean end close "
                            "to standard training (docs/knob.md); the paper's is 1 / the number of λs (1/6)."},
    "train_limit": {"type": click.IntRange(min=1), "help": "Use only the first N training samples (smoke runs)."},
    "val_split": {"help": "Train on all but the last 5,000 training images, as the paper's code does (cifar10, svhn); "
                          "`oatdeploy eval --val-split` evaluates on those 5,000."},
    "augment": {"help": "Random crop (and flip on CIFAR-10) of training images."},
    "dual_bn": {"help": "Separate BN for clean (λ=0) and adversarial samples; --single-bn is the paper's ablation."},
    "seed": {"help": "Seeds the model, data order, λs, PGD starts and augmentation."},
    "save_every": {"type": click.IntRange(min=0), "help": "Also checkpoint every N steps (0: at each epoch's end)."},
    "amp": {"help": "bf16 autocast on CUDA GPUs that compute bf16 natively (--no-amp: fp32)."},
    "amp_cpu": {"help": "bf16 autocast on CPUs with AVX-512 BF16 or AMX too: about 0.65x the fp32 step time there, "
                        "but in the demo it halved how far RA moves with λ, so it is off by default."},
    "channels_last": {"help": "Channels-last tensors: faster convolutions on CUDA (on a CPU, torch 2.13's oneDNN "
                              "convolution backward corrupted memory with them, so it is off by default)."},
    "compile": {"help": "torch.compile the model for training and for the attack (minutes of compiling first)."},
    "cuda_graphs": {"help": "Capture the training step as a CUDA graph once and replay it (one GPU, no --compile; "
                            "ignored with a warning on a CPU)."},
    "device": {"help": DEVICE_HELP},
    "dist_timeout": {"type": click.FloatRange(min=0, min_open=True),
                     "help": "Seconds a collective waits for the other ranks before naming the one that stopped."},
}


RESUME_CHANGES = ", ".join(option_name(f) for f in user_fields() if f.name in MAY_CHANGE_ON_RESUME - {"out"})


def train_options(only: Collection[str] | None = None,
                  defaults: Mapping[str, Any] | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """TrainConfig's options, for `train` (all of them) and other commands that take some of them."""
    return config_options(TrainConfig, SPECS, only, defaults)


def replay_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--config RUN/config.json: its values become the defaults; options on the command line still win."""
    if value is None:
        return
    try:
        saved = json.loads(Path(value).read_text())
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"cannot read {value} as JSON ({e}); point to the config.json of a run") from None
    if not isinstance(saved, dict):
        raise click.BadParameter(f"{value} holds no JSON object; point to the config.json of a run")
    names = {f.name for f in user_fields()}
    unknown = sorted(set(saved) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise click.BadParameter(f"{value} has unknown field(s) {', '.join(unknown)}; remove them (this oatdeploy "
                                 f"knows {', '.join(sorted(names))})")
    # The old run's folder is not a default: a replay writes where --out says.
    ctx.default_map = {**(ctx.default_map or {}), **{k: v for k, v in saved.items() if k in names and k != "out"}}


def given_options(ctx: click.Context) -> set[str]:
    """The config fields set on the command line (or through the environment), not left at a default."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {f.name for f in user_fields() if ctx.get_parameter_source(f.name) in sources}


@click.command(cls=Command, renamed={"--objective": "--loss"})
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), is_eager=True,
              expose_value=False, callback=replay_config,
              help="Replay a run: take every option from its config.json (options given here override).")
@train_options()
@click.option("--resume", is_flag=True,
              help=f"Continue RUN/supernet.pt where it stopped. Only {RESUME_CHANGES} may differ from the run's.")
@click.option("--force", is_flag=True, help="Start over even though RUN holds a checkpoint (it is replaced).")
@quiet_option
@click.pass_context
def train(ctx: click.Context, resume: bool, force: bool, quiet: bool, **kwargs: Any) -> None:
    """Train one OAT/OATS supernet; writes RUN/supernet.pt, RUN/config.json and RUN/train.log."""
    from oatdeploy.distributed import RankLost
    from oatdeploy.overwrite import check_run_folder
    from oatdeploy.preemption import TrainingInterrupted
    from oatdeploy.runtime.errors import OatError
    from oatdeploy.trainer import train as run_training

    if resume and ctx.get_parameter_source("config_file") not in (None, ParameterSource.DEFAULT):
        raise OatError("--config starts a new run from a config.json and --resume continues RUN's own; use one")
    check_run_folder(str(kwargs["out"]), force=force, resume=resume)
    main = os.environ.get("RANK", "0") == "0"
    try:
        path = run_training(TrainConfig(**kwargs), resume=resume, progress=not quiet, given=given_options(ctx))
    except TrainingInterrupted as e:
        if main:
            click.echo(f"stopped after step {e.step}/{e.total}; saved {e.checkpoint}. Resume with the same command "
                       f"plus --resume, e.g. `oatdeploy train --resume --out {kwargs['out']}` (under torchrun or "
                       "srun: the same launch line)", err=True)
        sys.exit(e.exit_code)
    except RankLost as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if main:
        click.echo(f"saved {path}")
