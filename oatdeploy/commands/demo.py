"""`oatdeploy demo`: the whole pipeline on the embedded Fashion-MNIST subset (`oatdeploy.demo.run_demo`)."""

from __future__ import annotations

import click

from oatdeploy.commands.config_options import device_option
from oatdeploy.demo import DEMO_EVAL, DEMO_TRAIN


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="demo", show_default=True, help="Output folder.")
@click.option("--epochs", type=click.IntRange(min=1), default=DEMO_TRAIN["epochs"], show_default=True,
              help="Training passes over the embedded training images.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Cut training short (smoke runs).")
@click.option("--eval-limit", type=click.IntRange(min=1), default=DEMO_EVAL["limit"], show_default=True,
              help="Test images used for SA/RA.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds training and evaluation.")
@click.option("--force", is_flag=True, help="Replace the run and deployment of an earlier demo in --out.")
@device_option
def demo(out: str, epochs: int, max_steps: int | None, eval_limit: int, seed: int, force: bool, device: str) -> None:
    """Train an OATS supernet on the embedded data, evaluate it, export, profile and select."""
    from oatdeploy.demo import run_demo

    run_demo(out, epochs, max_steps, eval_limit, seed, force, stage=lambda name: click.secho(f"\n== {name}", bold=True),
             say=click.echo, device=device)
