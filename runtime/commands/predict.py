"""`oatdeploy predict`: labels for image files, served by the variant that meets a budget. Torch-free.

Images go through the switcher one by one (batch 1, the batch size latency is profiled at), so a latency
budget means per image, as it would in a serving loop.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click
import numpy as np

from oatdeploy.runtime.commands.options import budget_options, graph_options
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.selection import Budget


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@budget_options
@graph_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the budget and a prediction per image.")
def predict(deploy: str, images: tuple[str, ...], budget: Budget, backend: str, precision: str, as_json: bool) -> None:
    """Classify IMAGES (PNG/JPEG files, or folders of them) with DEPLOY's variant that meets the budget."""
    from oatdeploy.runtime import Deployment
    from oatdeploy.runtime.images import image_files, load_image
    from oatdeploy.runtime.labels import class_names

    files = image_files(images)
    dep = Deployment.load(deploy, backend=backend, precision=precision)
    model = dep.manifest.model
    if model.num_classes is None:
        raise OatError(f"{deploy}/manifest.json records no model.num_classes, which predict needs to name classes; "
                       "re-export the deployment")
    names = class_names(model.dataset, int(model.num_classes))
    inputs = [(f, load_image(f, model.input_shape)[None]) for f in files]  # all read before any is served
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
    if as_json:
        click.echo(json.dumps({"deployment": deploy, "backend": backend, "precision": precision,
                               "budget": asdict(budget), "predictions": predictions}, indent=2))
        return
    first = predictions[0]["variant"]
    click.echo(f"served by {predictions[0]['served_by']}, {backend} {precision}")
    width = max(len(p["file"]) for p in predictions)
    for p in predictions:
        moved = "" if p["variant"] == first else f"  [{p['variant']}]"  # the switcher re-selected on latency
        click.echo(f"{p['file']:<{width}}  {p['class']} ({p['label']})  {p['probability']:.3f}{moved}")
