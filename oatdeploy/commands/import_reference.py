"""`oatdeploy import-reference`: a checkpoint saved by the paper's code as RUN/supernet.pt."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import click

from oatdeploy.commands.config_options import LazyChoice
from oatdeploy.commands.paths import checkpoint_file
from oatdeploy.config import ENCODINGS
from oatdeploy.runtime.commands.options import float_list


def reference() -> ModuleType:
    import oatdeploy.reference

    return oatdeploy.reference


@click.command(name="import-reference")
@click.argument("checkpoint", type=click.Path(), callback=checkpoint_file)
@click.option("--arch", type=LazyChoice(lambda: reference().ARCHS), required=True,
              help="resnet34: ResNet34OAT or SlimmableResNet34OAT (CIFAR-10); wrn16_8: WRN16_8OAT (SVHN); "
                   "wrn40_2: WRN40_2OAT (STL-10).")
@click.option("--lambdas", required=True, callback=float_list,
              help="The λ choices in the order of the reference's --lambda_choices, e.g. 0,0.1,0.2,0.3,0.4,1.")
@click.option("--encoding", type=click.Choice(ENCODINGS), required=True,
              help="The reference's --encoding (its default is rand).")
@click.option("--encoding-matrix", type=click.Path(dir_okay=False), default=None,
              help="rand: the rand_otho_mat.npy saved beside latest.pth.")
@click.option("--widths", default=None, callback=float_list,
              help="Slimmable checkpoints only: the reference's width_mult_list  [default: 0.5,0.75,1]")
@click.option("--dataset", type=LazyChoice(lambda: reference().DATASETS), required=True,
              help="The dataset the reference model was trained on.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="The dataset's folder, recorded so that eval and export find it.")
@click.option("--eps", type=click.FloatRange(0, 1), default=None, help="L∞ radius for eval/export  [default: 8/255]")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run folder to write.")
@click.option("--force", is_flag=True, help="Replace a checkpoint already in --out.")
def import_reference(checkpoint: str, arch: str, lambdas: list[float], encoding: str, encoding_matrix: str | None,
                     widths: list[float] | None, dataset: str, data_dir: str | None, eps: float | None,
                     out: str, force: bool) -> None:
    """Convert the paper's OAT/OATS CHECKPOINT (latest.pth, best_TA*.pth, best_ATA*.pth) into OUT/supernet.pt."""
    from oatdeploy.checkpoint import read_checkpoint
    from oatdeploy.overwrite import check_run_folder
    from oatdeploy.reference import ImportRequest, describe_import, import_reference

    check_run_folder(out, force=force, resumable=False)

    req = ImportRequest(checkpoint=Path(checkpoint), arch=arch, lambdas=lambdas, encoding=encoding,
                        dataset=dataset, out=Path(out), widths=widths,
                        encoding_matrix=Path(encoding_matrix) if encoding_matrix else None,
                        data_dir=str(Path(data_dir).resolve()) if data_dir else None, eps=eps)
    ckpt = import_reference(req)
    click.echo(f"imported {describe_import(read_checkpoint(ckpt)['config'])}")
    click.echo(f"wrote {ckpt}; next: oatdeploy eval {ckpt}  or  oatdeploy export {ckpt} --out DEPLOY --evaluate")
