"""`oatdeploy train`: OAT (one width) or OATS (several widths) supernet training."""

from __future__ import annotations

import os

import click

from oatdeploy.commands.options import float_list


@click.command()
@click.option("--dataset", default="fmnist-mini", show_default=True,
              help="fmnist-mini (embedded), fashion-mnist (IDX files) or cifar10 (python batches).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with the dataset files (fashion-mnist defaults to Debian's path).")
@click.option("--arch", default="resnet20", show_default=True, help="resnet20, resnet34, wrn16_8, wrn40_2.")
@click.option("--lambdas", default="0,0.1,0.2,0.3,0.4,1", show_default=True, callback=float_list,
              help="λ choices (0 = clean training, 1 = pure adversarial training).")
@click.option("--widths", default="1", show_default=True, callback=float_list,
              help="Width fractions; more than one trains an OATS (slimmable) supernet.")
@click.option("--width-rule", type=click.Choice(["all", "sandwich"]), default="all", show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps.")
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True)
@click.option("--pgd-steps", type=click.IntRange(min=0), default=7, show_default=True,
              help="PGD steps for training's adversarial examples.")
@click.option("--eps", type=click.FloatRange(0, 1), default=None,
              help="L∞ radius on [0,1] pixels (default: the dataset's preset, 0.1 Fashion-MNIST, 8/255 CIFAR).")
@click.option("--encoding", "enc_kind", type=click.Choice(["rand", "none", "onehot", "dct"]), default="rand",
              show_default=True, help="λ encoding fed to FiLM.")
@click.option("--dual-bn/--single-bn", "dual_bn", default=True, show_default=True,
              help="Separate BN for clean (λ=0) and adversarial samples; --single-bn is the paper's ablation.")
@click.option("--train-limit", type=click.IntRange(min=1), default=None,
              help="Use only the first N training samples (smoke runs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--save-every", type=click.IntRange(min=0), default=0, help="Also checkpoint every N steps.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--resume", is_flag=True, help="Continue RUN/supernet.pt exactly where it stopped.")
@click.option("--force", is_flag=True, help="Start over even though RUN holds a checkpoint (it is replaced).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run folder.")
def train(resume: bool, force: bool, **kwargs: object) -> None:
    """Train one OAT/OATS supernet; writes RUN/supernet.pt, RUN/config.json and RUN/train.log."""
    from oatdeploy.overwrite import check_run_folder
    from oatdeploy.trainer import TrainConfig
    from oatdeploy.trainer import train as run_training

    check_run_folder(str(kwargs["out"]), force=force, resume=resume)

    path = run_training(TrainConfig(**kwargs), resume=resume)
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"saved {path}")
