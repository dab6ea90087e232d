"""`oatdeploy eval`: clean and robust accuracy per (λ, width) into eval.json."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(name="eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="eval.json path (default: next to the checkpoint).")
@click.option("--pgd-steps", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--eps", type=click.FloatRange(0, 1), default=None, help="Default: the eps the run trained with.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate on the first N test samples.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Override the run's data folder.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--attack", type=click.Choice(["pgd", "apgd-ce"]), default="pgd", show_default=True,
              help="apgd-ce uses adversarial-robustness-toolbox (pip install adversarial-robustness-toolbox).")
def evaluate(checkpoint: str, out: str | None, pgd_steps: int, eps: float | None, limit: int | None,
             data_dir: str | None, batch_size: int, attack: str) -> None:
    """SA and RA for every (λ, width) of CHECKPOINT, printed as a table and written as JSON."""
    from oatdeploy.atomic import atomic_write_json
    from oatdeploy.evaluate import format_table, run_evaluation

    report = run_evaluation(checkpoint, pgd_steps=pgd_steps, eps=eps, limit=limit, data_dir=data_dir,
                            batch_size=batch_size, attack=attack)
    out_path = Path(out) if out else Path(checkpoint).with_name("eval.json")
    atomic_write_json(out_path, report)
    click.echo(format_table(report))
    click.echo(f"wrote {out_path}")
