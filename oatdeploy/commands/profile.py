"""`oatdeploy profile`: latency of every variant on this device, saved in the manifest. Torch-free."""

from __future__ import annotations

import click


def format_profile(rows: list[dict[str, object]]) -> str:
    """One line per (variant, batch): p50/p95 in ms and how many timed runs they rest on."""
    head = f"{'variant':<14} {'batch':>5} {'p50 ms':>8} {'p95 ms':>8} {'runs':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['id']:<14} {r['batch']:>5} {r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} {r['runs']:>6}")
    return "\n".join(lines)


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@click.option("--backend", type=click.Choice(["ort", "trt"]), default="ort", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True, default=(1,), show_default=True,
              help="Batch size; repeat for several.")
@click.option("--runs", type=click.IntRange(min=5), default=50, show_default=True,
              help="At least this many timed runs.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def profile(deploy: str, backend: str, precision: str, batches: tuple[int, ...], runs: int, quiet: bool) -> None:
    """Measure p50/p95 latency of every variant in DEPLOY here and store it under this device's key."""
    from oatdeploy.runtime import Deployment

    dep = Deployment.load(deploy, backend=backend, precision=precision)
    rows = dep.profile(batches=batches, progress=not quiet, min_runs=runs)
    click.echo(format_profile(rows))
    keys = ", ".join(f"'{dep.key(backend, precision, b)}'" for b in batches)
    click.echo(f"saved under {keys} in {deploy}/manifest.json")
