"""`oatdeploy select`: the variant that meets a latency/robustness budget on this device, and why. Torch-free."""

from __future__ import annotations

import json
from dataclasses import asdict

import click


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="p50 on this device at most this (the measured p50, not its spread).")
@click.option("--min-robust-acc", type=click.FloatRange(0, 1), default=None,
              help="RA at least this (the point estimate, not its 95 % interval).")
@click.option("--min-clean-acc", type=click.FloatRange(0, 1), default=None,
              help="SA at least this (the point estimate, not its 95 % interval).")
@click.option("--objective", type=click.Choice(["clean", "robust"]), default="clean", show_default=True,
              help="What the chosen variant maximises within the budget.")
@click.option("--strict", is_flag=True,
              help="Compare point estimates: no ties for accuracies whose 95 % intervals overlap or latencies "
                   "within their profiling spread (docs/selection.md).")
@click.option("--backend", type=click.Choice(["ort", "trt"]), default="ort", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--power-mismatch", type=click.Choice(["warn", "refuse"]), default="warn", show_default=True,
              help="On a Jetson, when the profile was taken in another power mode or clock state.")
@click.option("--json", "as_json", is_flag=True, help="Print the chosen variant and why as JSON.")
def select(deploy: str, max_latency_ms: float | None, min_robust_acc: float | None,
           min_clean_acc: float | None, objective: str, strict: bool, backend: str, precision: str, batch: int,
           power_mismatch: str, as_json: bool) -> None:
    """Pick the best variant of DEPLOY within the budget (exit 2 when none fits).

    Unless --strict, accuracies whose 95 % intervals overlap the best one's count as tied, and so do
    latencies within the spread between profiling rounds; the faster, then the more robust, wins.
    """
    from oatdeploy.runtime import Deployment

    dep = Deployment.load(deploy, backend=backend, precision=precision, batch=batch, power_policy=power_mismatch)
    choice = dep.choose(max_latency_ms=max_latency_ms, min_robust_acc=min_robust_acc, min_clean_acc=min_clean_acc,
                        objective=objective, strict=strict)
    if as_json:
        click.echo(json.dumps({**asdict(choice.variant), "device_key": dep.key(), "strict": strict,
                               "tied_on_accuracy": [v.id for v in choice.accuracy_tied],
                               "tied_on_latency": [v.id for v in choice.latency_tied], "why": choice.reasons()}))
    else:
        click.echo(f"{choice.variant.describe()}  [{dep.key()}]")
        click.echo("\n".join(f"  {line}" for line in choice.reasons()))
