"""The whole pipeline on the embedded Fashion-MNIST subset, as one function: train → evaluate → export → profile →
select, each step the library's own (`oatdeploy demo` prints what this reports; the studies reuse its settings).

Sized for a 2-core CPU: an OATS ResNet-20 with two widths, PGD-3 training, PGD-10 evaluation on all 1,000 test
images of fmnist-mini (on 500, one accuracy is uncertain by about ±3.7 points: more than the knob moves SA).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from oatdeploy.runtime import Budget, Deployment, NoFeasibleVariant
from oatdeploy.runtime.errors import OatError

DEMO_TRAIN = {"dataset": "fmnist-mini", "arch": "resnet20", "widths": [0.5, 1.0], "epochs": 4, "batch_size": 64,
              "pgd_steps": 3, "lr": 0.05}
DEMO_EVAL = {"pgd_steps": 10, "limit": 1000}


def example_budgets(dep: Deployment) -> list[Budget]:
    """Two budgets read off this machine's profile: a tight latency that only the fastest variants meet,
    and a high threat level that asks for the most robust variant at any latency here."""
    latencies = [v.latency_ms for v in dep.variants if v.latency_ms is not None]
    robust = max(v.robust_acc for v in dep.variants if v.robust_acc is not None)
    return [Budget(max_latency_ms=1.1 * min(latencies), min_robust_acc=0.5 * robust),
            Budget(max_latency_ms=2 * max(latencies), min_robust_acc=robust)]


def run_demo(out: str | Path, epochs: int = DEMO_TRAIN["epochs"], max_steps: int | None = None,  # type: ignore[assignment]
             eval_limit: int = DEMO_EVAL["limit"], seed: int = 0, force: bool = False,
             stage: Callable[[str], None] = print, say: Callable[[str], None] = print, device: str = "auto") -> Path:
    """Run the pipeline into OUT/run (checkpoint, eval.json) and OUT/deploy (the deployment and its plot);
    `stage` announces each step, `say` reports its result. Training, evaluation and export's attacks run on
    `device` (auto: a GPU when torch sees one); profiling is ONNX Runtime's, on the CPU. Returns the deployment
    folder."""
    from oatdeploy.config import TrainConfig
    from oatdeploy.devices import resolve_device
    from oatdeploy.evaluate import format_table, knob_summary, run_evaluation
    from oatdeploy.export.manifest import format_variants
    from oatdeploy.export.pipeline import export_deployment
    from oatdeploy.overwrite import check_deployment_folder, check_run_folder
    from oatdeploy.runtime.atomic import atomic_write_json
    from oatdeploy.runtime.plots import Outcome, plot_deployment, threat_text
    from oatdeploy.runtime.profile import format_profile
    from oatdeploy.trainer import train

    resolve_device(device)  # a wrong --device is refused before anything is written
    t0 = time.perf_counter()
    run, deploy = Path(out) / "run", Path(out) / "deploy"
    check_run_folder(run, force=force, resumable=False)
    check_deployment_folder(deploy, force=force)
    stage(f"train: {DEMO_TRAIN['arch']} supernet, widths {DEMO_TRAIN['widths']}, embedded fmnist-mini")
    ckpt = train(TrainConfig(**{**DEMO_TRAIN, "epochs": epochs, "max_steps": max_steps, "seed": seed,
                                "out": str(run), "device": device}))
    stage(f"eval: SA/RA per (λ, width), PGD-{DEMO_EVAL['pgd_steps']} on {eval_limit} test images")
    report = run_evaluation(ckpt, pgd_steps=DEMO_EVAL["pgd_steps"], limit=eval_limit, device=device)
    atomic_write_json(run / "eval.json", report)
    say(format_table(report))
    say("\n".join(["what the λ knob does at full width:", *knob_summary(report)]))

    stage("export: fold BN and FiLM into every (λ, width), ONNX, verified under ONNX Runtime")
    manifest = export_deployment(ckpt, deploy, verify_samples=min(eval_limit, 500), adv_steps=DEMO_EVAL["pgd_steps"],
                                 device=device)
    say(format_variants(manifest))

    stage("profile: latency of every variant on this machine (ONNX Runtime, batch 1)")
    dep = Deployment.load(deploy)
    say(format_profile(dep.profile(batches=(1,))))
    stage("select: the best clean accuracy within a budget")
    outcomes = []
    for n, budget in enumerate(example_budgets(dep), 1):
        try:
            choice = dep.choose(budget)
            outcomes.append(Outcome(budget, choice))
            chosen = choice.describe()
        except NoFeasibleVariant as e:
            outcomes.append(Outcome(budget, error=str(e)))
            chosen = f"none: {e}"
        say(f"budget {n} ({budget.text()}): {chosen}")
    try:
        png = plot_deployment(dep.variants, dep.key(), deploy / "tradeoff-ort-fp32.png", outcomes,
                              title="oatdeploy demo: resnet20 on fmnist-mini", attack=threat_text(dep.manifest))
        say(f"plot: {png}")
    except OatError as e:
        say(f"plot skipped: {e}")
    say(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; everything is in {Path(out)}/")
    return deploy
