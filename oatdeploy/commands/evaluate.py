"""`oatdeploy eval`: clean and robust accuracy per (λ, width), in a JSON file named by what it holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from oatdeploy.commands.config_options import device_option
from oatdeploy.commands.paths import checkpoint_file
from oatdeploy.eval_files import ATTACKS
from oatdeploy.runtime.commands.options import format_option, quiet_option


@click.command(name="eval")
@click.argument("checkpoint", type=click.Path(), callback=checkpoint_file)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="JSON to write  [default: next to the checkpoint, named by what it holds: eval-pgd20-n1000.json]")
@click.option("--pgd-steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Steps of the PGD attack (--attack pgd) that RA is measured under.")
@click.option("--eps", type=click.FloatRange(0, 1), default=None, help="Default: the eps the run trained with.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate on the first N samples (RobustBench allows subsets during development).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Override the run's data folder.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per attack batch  [default: 256 on a CPU, 512 to 2048 on a GPU by its memory]")
@device_option
@click.option("--attack", type=click.Choice(ATTACKS), default="pgd", show_default=True,
              help="pgd: PGD-N (--pgd-steps); apgd-ce: APGD-CE from adversarial-robustness-toolbox; autoattack: the "
                   "standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square-5000) from pyautoattack. "
                   "pip install 'oatdeploy[attacks]' for the last two.")
@click.option("--force", is_flag=True, help="Replace --out even when it holds another evaluation.")
@click.option("--val-split", is_flag=True,
              help="Evaluate on the reference code's validation split (the last 5,000 training images of cifar10 "
                   "or svhn) instead of the test set.")
@quiet_option
@format_option
def evaluate(checkpoint: str, out: str | None, pgd_steps: int, eps: float | None, limit: int | None,
             data_dir: str | None, batch_size: int | None, device: str, attack: str, force: bool, val_split: bool,
             quiet: bool, fmt: str) -> None:
    """SA and RA for every (λ, width) of CHECKPOINT, printed as a table and written as JSON."""
    from oatdeploy.eval_files import evaluation_name
    from oatdeploy.evaluate import format_table, run_evaluation
    from oatdeploy.overwrite import check_evaluation_file
    from oatdeploy.runtime.atomic import atomic_write_json
    from oatdeploy.runtime.errors import OatError
    from oatdeploy.runtime.manifest import attack_label

    report = run_evaluation(checkpoint, pgd_steps=pgd_steps, eps=eps, limit=limit, data_dir=data_dir,
                            batch_size=batch_size, attack=attack, val_split=val_split, progress=not quiet,
                            device=device)
    if fmt == "text":
        click.echo(format_table(report))
        click.echo(f"RA under {attack_label(report)} (eps {report['attack']['eps']:.4g}) on "
                   f"{report['num_samples']} images: {report['split_note']}")
    named = Path(checkpoint).with_name(evaluation_name(report, with_eps=eps is not None))
    target = Path(out) if out else named
    try:
        check_evaluation_file(target, report, force)
    except OatError as refused:  # keep what may have taken hours, under the name that says what it is
        if target == named:
            raise
        check_evaluation_file(named, report)
        atomic_write_json(named, report)
        raise OatError(f"{refused}; nothing is lost: this evaluation is saved as {named}") from None
    atomic_write_json(target, report)
    click.echo(json.dumps(report) if fmt == "json" else f"wrote {target}")
