"""`oatdeploy export`: fold every (λ, width) into a plain network, export to ONNX, verify, write the manifest."""

from __future__ import annotations

import click

from oatdeploy.commands.config_options import device_option
from oatdeploy.commands.paths import checkpoint_file
from oatdeploy.runtime.commands.options import quiet_option
from oatdeploy.runtime.manifest import MODES


@click.command()
@click.argument("checkpoint", type=click.Path(), callback=checkpoint_file)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Deployment folder to write.")
@click.option("--force", is_flag=True, help="Replace the deployment already in --out.")
@click.option("--mode", type=click.Choice(MODES), default="folded", show_default=True,
              help="folded: one graph per (λ, width); shared: one graph per width with λ as an input.")
@click.option("--eval-json", type=click.Path(dir_okay=False), default=None,
              help="SA/RA source  [default: the evaluation of this checkpoint beside it (eval*.json), when there "
                   "is exactly one]")
@click.option("--evaluate", is_flag=True, help="Compute SA/RA (PGD-20) when no eval.json exists.")
@click.option("--verify-samples", type=click.IntRange(min=1), default=256, show_default=True,
              help="Test images used to verify each graph and kept for reduced-precision checks.")
@click.option("--calib-samples", type=click.IntRange(min=1), default=512, show_default=True,
              help="Training images saved for int8 calibration on the device.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Override the run's data folder.")
@device_option
@quiet_option
def export(checkpoint: str, out: str, force: bool, mode: str, eval_json: str | None, evaluate: bool,
           verify_samples: int, calib_samples: int, data_dir: str | None, device: str, quiet: bool) -> None:
    """Export CHECKPOINT's every (λ, width) as verified ONNX plus manifest.json into OUT."""
    from oatdeploy.eval_files import choose_evaluation
    from oatdeploy.export.manifest import format_variants
    from oatdeploy.export.pipeline import export_deployment
    from oatdeploy.overwrite import check_deployment_folder

    check_deployment_folder(out, force)
    eval_json = choose_evaluation(checkpoint, eval_json)
    manifest = export_deployment(checkpoint, out, mode=mode, eval_json=eval_json, evaluate=evaluate,
                                 verify_samples=verify_samples, calib_samples=calib_samples, data_dir=data_dir,
                                 progress=not quiet, device=device)
    click.echo(format_variants(manifest))
    source = manifest.metrics_source
    if source is None or source.origin is None:
        click.echo(f"note: {source.note if source else 'no SA/RA'} (so `select` can use accuracy budgets)")
    else:
        click.echo(f"SA/RA from {source.origin} ({source.describe()})")
    click.echo(f"wrote {out}/manifest.json ({len(manifest.variants)} variants, mode {mode})")
