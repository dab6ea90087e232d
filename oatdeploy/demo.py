"""The whole pipeline on the embedded Fashion-MNIST subset, as one function: train → evaluate → export → profile →
select, each step the library's own (`oatdeploy demo` prints what this reports; the studies reuse its settings).

Sized for a 2-core CPU: an OATS ResNet-20 with two widths, PGD-3 training, PGD-10 evaluation on all 1,000 test
images of fmnist-mini (on 500, one accuracy is uncertain by about ±3.7 points: more than the knob moves SA).
The quick plan runs every stage on a fraction of that work, to see the pipeline rather than the trade-off.

A newcomer reads the printout, so it says what the knob's two ends mean before training, how the two example
budgets were made, how long the whole demo has left, and what to run next.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from oatdeploy.config import DEFAULT_LAMBDAS, TrainConfig
from oatdeploy.demo_clock import DemoClock, DemoWork, duration
from oatdeploy.runtime import Budget, Deployment, NoFeasibleVariant
from oatdeploy.runtime.errors import OatError

DEMO_TRAIN = {"dataset": "fmnist-mini", "arch": "resnet20", "widths": [0.5, 1.0], "epochs": 4, "batch_size": 64,
              "pgd_steps": 3, "lr": 0.05}
DEMO_EVAL = {"pgd_steps": 10, "limit": 1000}
EXAMPLE_IMAGES = 4  # test images written as PNG files for the `predict` the demo suggests


@dataclass(frozen=True)
class DemoPlan:
    """What one demo trains and measures."""

    train: dict[str, Any]  # TrainConfig fields
    eval_pgd_steps: int = DEMO_EVAL["pgd_steps"]
    eval_limit: int = DEMO_EVAL["limit"]
    verify_samples: int = 500  # test images export checks every variant on (clean and under PGD)
    profile_seconds: float = 0.5  # timed runs per variant
    lambdas: list[float] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lambdas", sorted(self.train.get("lambdas", DEFAULT_LAMBDAS)))

    def steps(self, train_images: int) -> int:
        """Training steps on a training set of this size (before --max-steps)."""
        used = min(train_images, self.train.get("train_limit") or train_images)
        return self.train["epochs"] * (used // self.train["batch_size"])

    def attacked_share(self) -> float:
        """The share of a batch that training attacks: the samples drawn with λ > 0."""
        clean = self.train.get("clean_share", TrainConfig.clean_share)
        return 1 - (1 / len(self.lambdas) if clean is None else clean)


FULL = DemoPlan(DEMO_TRAIN)
QUICK = DemoPlan({**DEMO_TRAIN, "lambdas": [0.0, 0.2, 1.0], "epochs": 1, "train_limit": 2048, "pgd_steps": 2},
                 eval_pgd_steps=5, eval_limit=200, verify_samples=100, profile_seconds=0.2)


def quick_note(train_images: int) -> str:
    """What --quick leaves out, from the two plans' own numbers."""
    q, f = QUICK, FULL
    return (f"quick demo (--quick): {q.steps(train_images)} training steps on {q.train['train_limit']:,} training "
            f"images (the full demo: {f.steps(train_images)} on {train_images:,}), λ ∈ {lambda_set(q)} (the full "
            f"demo: {lambda_set(f)}), PGD-{q.eval_pgd_steps} on {q.eval_limit} test images (the full demo: "
            f"PGD-{f.eval_pgd_steps} on {f.eval_limit:,}). Every stage runs, but a model trained this briefly is "
            "barely robust at any λ, so its numbers do not show the trade-off: the full demo does.")


def lambda_set(plan: DemoPlan) -> str:
    return "{" + ", ".join(f"{v:g}" for v in plan.lambdas) + "}"


class ExampleBudget(NamedTuple):
    """A budget the demo made from this run's own numbers, and how, in words."""

    budget: Budget
    how: str


def example_budgets(dep: Deployment) -> list[ExampleBudget]:
    """Two budgets read off this run: a tight latency that only the fastest variants meet, and a high threat
    level that asks for the most robust variant at any latency here (fixed numbers would not fit every machine)."""
    latencies = [v.latency_ms for v in dep.variants if v.latency_ms is not None]
    robust = max(v.robust_acc for v in dep.variants if v.robust_acc is not None)
    fastest, slowest = min(latencies), max(latencies)
    return [
        ExampleBudget(Budget(max_latency_ms=1.1 * fastest, min_robust_acc=0.5 * robust),
                      f"a tight deadline: p50 within 10 % of the fastest variant's here ({fastest:.3g} ms), and at "
                      f"least half the best RA of this run ({robust:.3f})"),
        ExampleBudget(Budget(max_latency_ms=2 * slowest, min_robust_acc=robust),
                      f"a strong attacker: any latency measured here (up to twice the slowest p50, {slowest:.3g} ms), "
                      f"and RA at least the best of this run ({robust:.3f})"),
    ]


def knob_text(plan: DemoPlan, eps: float) -> list[str]:
    """What λ means, in plain words, before any number is shown."""
    between = ", ".join(f"{v:g}" for v in plan.lambdas if 0 < v < 1)
    widths = " and ".join(f"{w:g}" for w in plan.train["widths"])
    return [
        "One network is trained once, with a knob λ that trades clean accuracy for robustness after training:",
        "  λ = 0  clean training only: the best clean accuracy (SA, on ordinary test images) and no robustness:",
        f"         changing each pixel by at most ε = {eps:g} (a PGD attack) fools it on almost every image.",
        "  λ = 1  adversarial training only: the most robust (the highest RA, the accuracy on attacked images),",
        "         paid for in clean accuracy.",
        f"  The λs in between ({between}) mix the two. Widths {widths}: the same network with a fraction of its",
        "  channels (smaller is faster and less accurate). Each (λ, width) is exported as a network of its own,",
        "  and a budget (a latency, a robustness floor) picks the one to serve.",
    ]


def cli_number(value: float, up: bool) -> str:
    """A budget limit as an option value, three significant digits, rounded so it admits what `value` admits."""
    scale = 10 ** (2 - math.floor(math.log10(abs(value)))) if value else 1
    rounded = (math.ceil if up else math.floor)(value * scale) / scale
    return f"{rounded:g}"


def next_commands(deploy: Path, images: Path | None, budget: Budget) -> list[str]:
    """The commands a user runs next, on this demo's folders, with one of its budgets as options."""
    options = []
    if budget.max_latency_ms is not None:
        options += ["--max-latency-ms", cli_number(budget.max_latency_ms, up=True)]
    if budget.min_robust_acc is not None:
        options += ["--min-robust-acc", cli_number(budget.min_robust_acc, up=False)]
    opts, dep = " ".join(options), shlex.quote(str(deploy))
    where = shlex.quote(str(images)) if images else "YOUR_IMAGES/"
    what = f"the {EXAMPLE_IMAGES} test images the demo wrote there" if images else "a folder of your PNG/JPEG files"
    return [
        f"  oatdeploy select {dep} {opts}",
        "      which variant meets the budget, and why (change the numbers for another trade-off)",
        f"  oatdeploy predict {dep} {where} {opts}",
        f"      labels for PNG/JPEG files ({what}), served by the variant that meets the budget",
        f"  oatdeploy plot {dep} {opts}",
        f"      the trade-off with this budget drawn in: {deploy / 'tradeoff-ort-fp32.png'}",
        f"  oatdeploy info {dep}",
        "      every variant with its SA/RA, their intervals and this machine's latency",
    ]


def write_example_images(folder: Path, dataset: str, count: int) -> Path | None:
    """A few test images as PNG files, so that `predict` has files to label; None without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return None
    from oatdeploy import data as datasets
    from oatdeploy.runtime.atomic import atomic_save
    from oatdeploy.runtime.labels import class_names

    test = datasets.load_dataset(dataset, split="test")
    names = class_names(dataset, test.num_classes)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        index = int((test.y == (i * 3) % test.num_classes).nonzero()[0])  # one image each of different classes
        pixels = (test.x[index].numpy() * 255).round().astype("uint8")
        image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
        slug = names[int(test.y[index])].lower().replace("/", "-").replace(" ", "-")
        atomic_save(folder / f"test{index:04d}-{slug}.png", lambda tmp, im=image: im.save(tmp, format="PNG"))
    return folder


def run_demo(out: str | Path, epochs: int | None = None, max_steps: int | None = None,
             eval_limit: int | None = None, seed: int = 0, force: bool = False,
             stage: Callable[[str], None] = print, say: Callable[[str], None] = print, *,
             quick: bool = False, device: str = "auto") -> Path:
    """Run the pipeline into OUT/run (checkpoint, eval.json), OUT/deploy (the deployment and its plot) and OUT/images
    (a few test images to label); `stage` announces each step, `say` reports its result. `quick` runs the quick
    plan (`QUICK`); `epochs`, `max_steps` and `eval_limit` override the plan's. Training, evaluation and export's
    attacks run on `device` (auto: a GPU when torch sees one); profiling is ONNX Runtime's, on the CPU. Returns the
    deployment folder."""
    from tqdm import tqdm

    from oatdeploy import data as datasets
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
    plan = QUICK if quick else FULL
    eval_limit = plan.eval_limit if eval_limit is None else eval_limit
    train_fields = {**plan.train, "epochs": epochs or plan.train["epochs"], "max_steps": max_steps, "seed": seed}
    run, deploy = Path(out) / "run", Path(out) / "deploy"
    check_run_folder(run, force=force, resumable=False)
    check_deployment_folder(deploy, force=force)
    widths, dataset = plan.train["widths"], plan.train["dataset"]
    clock = DemoClock(DemoWork(
        batch_size=plan.train["batch_size"], train_pgd_steps=plan.train["pgd_steps"],
        attacked_share=plan.attacked_share(), lambdas=len(plan.lambdas),
        variants=len(plan.lambdas) * len(widths), eval_images=eval_limit, eval_pgd_steps=plan.eval_pgd_steps,
        verify_images=min(eval_limit, plan.verify_samples), profile_seconds=plan.profile_seconds))

    def begin(name: str, number: int, what: str) -> None:
        left = clock.left(name)
        when = ("time left: estimated after the first training steps" if left is None
                else f"about {duration(left)} left for the whole demo")
        stage(f"{name} ({number}/5): {what} [{when}]")
        clock.start(name)

    def on_step(done: int, last: int) -> None:
        if clock.step(done, last):
            with tqdm.external_write_mode():
                say(f"measured {clock.step_seconds:.2f} s per training step: about "
                    f"{duration(clock.left('train') or 0)} left for the whole demo")

    if quick:
        say(quick_note(len(datasets.load_dataset(dataset, split="train"))) + "\n")
    say("\n".join(knob_text(plan, datasets.DEFAULT_EPS[dataset])))
    begin("train", 1, f"{plan.train['arch']} supernet, widths {widths}, λ ∈ {lambda_set(plan)}, "
          f"PGD-{plan.train['pgd_steps']} adversarial examples, embedded {dataset}")
    ckpt = train(TrainConfig(**train_fields, out=str(run), device=device), on_step=on_step)
    clock.finished("train")

    begin("eval", 2, f"SA/RA per (λ, width), PGD-{plan.eval_pgd_steps} on {eval_limit} test images")
    report = run_evaluation(ckpt, pgd_steps=plan.eval_pgd_steps, limit=eval_limit, device=device)
    atomic_write_json(run / "eval.json", report)
    clock.finished("eval")
    say(format_table(report))
    say("\n".join(["what the λ knob does at full width (SA should fall and RA rise as λ grows):",
                   *knob_summary(report)]))

    begin("export", 3, "fold BN and FiLM into every (λ, width), ONNX, verified under ONNX Runtime")
    manifest = export_deployment(ckpt, deploy, verify_samples=min(eval_limit, plan.verify_samples),
                                 adv_steps=plan.eval_pgd_steps, device=device)
    clock.finished("export")
    say(format_variants(manifest))

    begin("profile", 4, "latency of every variant on this machine (ONNX Runtime, batch 1)")
    dep = Deployment.load(deploy)
    say(format_profile(dep.profile(batches=(1,), progress=True, min_seconds=plan.profile_seconds)))
    clock.finished("profile")

    begin("select", 5, "the best clean accuracy within a budget")
    examples = example_budgets(dep)
    say("The two budgets below are not fixed numbers: they were derived from this run (the latencies just "
        "measured on this machine, the RA just evaluated), so that each asks for something this run can show:")
    say("\n".join(f"  budget {n}: {example.how}" for n, example in enumerate(examples, 1)))
    outcomes = []
    for n, example in enumerate(examples, 1):
        try:
            choice = dep.choose(example.budget)
            outcomes.append(Outcome(example.budget, choice))
            chosen = choice.describe()
        except NoFeasibleVariant as e:
            outcomes.append(Outcome(example.budget, error=str(e)))
            chosen = f"none: {e}"
        say(f"budget {n} ({example.budget.text()}): {chosen}")
    try:
        png = plot_deployment(dep.variants, dep.key(), deploy / "tradeoff-ort-fp32.png", outcomes,
                              title=f"oatdeploy demo: {plan.train['arch']} on {dataset}",
                              attack=threat_text(dep.manifest))
        say(f"plot: {png}")
    except OatError as e:
        say(f"plot skipped: {e}")
    images = write_example_images(Path(out) / "images", dataset, EXAMPLE_IMAGES)
    met = next((o.budget for o in outcomes if o.choice is not None), examples[0].budget)
    say(f"\ndemo finished in {duration(time.perf_counter() - t0)}; everything is in {Path(out)}/")
    say("\n".join(["next, with the first budget this run met as options:", *next_commands(deploy, images, met)]))
    if quick:
        say("This was the quick demo: run `oatdeploy demo` without --quick for a model that shows the trade-off.")
    return deploy
