"""`oatdeploy predict`: labels for image files, served by the variant that meets a budget. Torch-free.

Images go through the switcher one by one (batch 1, the batch size latency is profiled at), so a latency
budget means per image, as it would in a serving loop.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import click
import numpy as np

from oatdeploy.runtime.commands.options import RENAMED_JSON, Command, budget_options, format_option, graph_options
from oatdeploy.runtime.errors import OatError, OatWarning
from oatdeploy.runtime.selection import Budget


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


@click.command(cls=Command, renamed=RENAMED_JSON)
@click.argument("deploy", type=click.Path(file_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@budget_options
@graph_options
@format_option
def predict(deploy: str, images: tuple[str, ...], budget: Budget, backend: str, precision: str, fmt: str) -> None:
    """Classify IMAGES (PNG/JPEG files, or folders of them) with DEPLOY's variant that meets the budget."""
    from oatdeploy.runtime import Deployment
    from oatdeploy.runtime.images import check_image_input, image_files
    from oatdeploy.runtime.labels import class_names

    files = image_files(images)
    dep = Deployment.load(deploy, backend=backend, precision=precision)
    model = dep.manifest.model
    if model.num_classes is None:
        raise OatError(f"{deploy}/manifest.json records no model.num_classes, which predict needs to name classes; "
                       "re-export the deployment")
    names = class_names(model.dataset, int(model.num_classes))
    check_image_input(model.input_shape)  # the model's, not an image's: one error, not one per file
    inputs, skipped = read_images(files, model.input_shape)  # all read before any is served
    predictions = []
    with dep.switcher(backend=backend, precision=precision, budget=budget, max_loaded=1) as sw:
        for path, x in inputs:
            logits, variant = sw(x, return_variant=True)
            if logits.ndim != 2 or logits.shape[1] != len(names):
                raise OatError(f"{variant.id} gives logits of shape {list(logits.shape)}, but the manifest says "
                               f"{len(names)} classes; the deployment is inconsistent: re-export it")
            probs = softmax(logits[0])
            label = int(probs.argmax())
            predictions.append({"file": str(path), "label": label, "class": names[label],
                                "probability": float(probs[label]), "variant": variant.id,
                                "served_by": variant.describe()})
    if fmt == "json":
        click.echo(json.dumps({"deployment": deploy, "backend": backend, "precision": precision,
                               "budget": asdict(budget), "predictions": predictions, "skipped": skipped}, indent=2))
        return
    first = predictions[0]["variant"]
    click.echo(f"served by {predictions[0]['served_by']}, {backend} {precision}")
    rows = [(p["file"], f"{p['class']} ({p['label']})", f"{p['probability']:.3f}",
             "" if p["variant"] == first else p["variant"]) for p in predictions]  # the switcher re-selected
    head = ("file", "class (label)", "probability", "variant" if any(r[3] for r in rows) else "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    for row in [head, *rows]:
        click.echo("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + (f"  {row[3]}" if row[3] else ""))


def read_images(files: list[Path], input_shape: Sequence[int]
                ) -> tuple[list[tuple[Path, np.ndarray]], list[dict[str, str]]]:
    """Each file as a batch of one; a file that cannot be read is reported (a warning line) and skipped, so one bad
    file does not cost a folder its labels. None readable: the first file's error."""
    from oatdeploy.runtime.images import load_image

    inputs, errors = [], []
    for f in files:
        try:
            inputs.append((f, load_image(f, input_shape)[None]))
        except OatError as e:
            errors.append((f, e))
    if not inputs and errors:
        raise errors[0][1]
    for _, e in errors:
        warnings.warn(f"skipped: {e}", OatWarning, stacklevel=2)
    return inputs, [{"file": str(f), "error": str(e)} for f, e in errors]
