"""`oatdeploy demo`: the whole pipeline on the embedded Fashion-MNIST subset (`oatdeploy.demo.run_demo`)."""

from __future__ import annotations

import click

from oatdeploy.commands.config_options import device_option
from oatdeploy.demo import FULL, QUICK


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="demo", show_default=True, help="Output folder.")
@click.option("--quick", is_flag=True,
              help=f"Every stage on a fraction of the work ({QUICK.train['train_limit']} training images, "
                   f"{len(QUICK.lambdas)} λs, {QUICK.eval_limit} test images): under a minute on 2 cores; the "
                   "pipeline, not the trade-off.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help=f"Passes over the training images [default: {FULL.train['epochs']}, with --quick "
                   f"{QUICK.train['epochs']}].")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Cut training short (smoke runs).")
@click.option("--eval-limit", type=click.IntRange(min=1), default=None,
              help=f"Test images used for SA/RA [default: {FULL.eval_limit}, with --quick {QUICK.eval_limit}].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the training run.")
@click.option("--force", is_flag=True, help="Replace the run and deployment of an earlier demo in --out.")
@device_option
def demo(out: str, quick: bool, epochs: int | None, max_steps: int | None, eval_limit: int | None, seed: int,
         force: bool, device: str) -> None:
    """Train an OATS supernet on the embedded data, evaluate it, export, profile and select, saying what each
    step means and how long the whole demo has left."""
    from oatdeploy.demo import run_demo

    run_demo(out, epochs, max_steps, eval_limit, seed, force, stage=lambda name: click.secho(f"\n== {name}", bold=True),
             say=click.echo, quick=quick, device=device)
