"""`oatdeploy profile`: latency of every variant on this device, with its noise, saved in the manifest. Torch-free."""

from __future__ import annotations

import click

from oatdeploy.commands.options import graph_options


def format_profile(rows: list[dict[str, object]]) -> str:
    """One line per (variant, batch): p50, the lowest-highest round median (the noise), p95, how many runs."""
    from oatdeploy.runtime.profile import NOISY, spread

    head = (f"{'variant':<14} {'batch':>5} {'p50 ms':>8} {'rounds p50 ms':>17} {'spread':>7} {'p95 ms':>8} "
            f"{'runs':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        s = spread(r)
        between = "n/a" if s is None else f"{s[0]:.3f}-{s[1]:.3f}"
        width = "n/a" if s is None else f"{(s[1] - s[0]) / r['p50_ms']:.0%}"
        flag = " !" if s is not None and s[1] - s[0] > NOISY * r["p50_ms"] else ""
        lines.append(f"{r['id']:<14} {r['batch']:>5} {r['p50_ms']:>8.3f} {between:>17} {width:>7} "
                     f"{r['p95_ms']:>8.3f} {r['runs']:>6}{flag}")
    lines.append("rounds p50: the lowest and highest median of the profiling rounds; spread: their gap over the "
                 f"p50 (! above {NOISY:.0%}); select treats p50s within the spread as tied")
    return "\n".join(lines)


@click.command()
@click.argument("deploy", type=click.Path(file_okay=False))
@graph_options
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True, default=(1,), show_default=True,
              help="Batch size; repeat for several.")
@click.option("--runs", type=click.IntRange(min=5), default=50, show_default=True,
              help="At least this many timed runs per variant, over all rounds.")
@click.option("--rounds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Rounds over all variants in turn; the spread of their medians is the noise.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def profile(deploy: str, backend: str, precision: str, batches: tuple[int, ...], runs: int, rounds: int,
            quiet: bool) -> None:
    """Measure p50/p95 latency of every variant in DEPLOY here and store it under this device's key.

    The variants are timed round-robin over several rounds, not one after another, so drift in clocks or
    load lands on all of them; the spread between rounds is stored and shown, and `select` treats latencies
    within it as tied.
    """
    from oatdeploy.runtime import Deployment

    dep = Deployment.load(deploy, backend=backend, precision=precision)
    rows = dep.profile(batches=batches, progress=not quiet, min_runs=runs, rounds=rounds)
    click.echo(format_profile(rows))
    keys = ", ".join(f"'{dep.key(backend, precision, b)}'" for b in batches)
    click.echo(f"saved under {keys} in {deploy}/manifest.json")
