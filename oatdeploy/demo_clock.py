"""The demo's time left, for the whole demo and not only the stage in progress.

Each stage's work is counted in image passes (one image forward and backward through every width), priced
at the seconds per pass measured over the first training steps, and re-priced as stages finish: a user sees
after a few steps how long everything will take, on their machine, under its current load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

STAGES = ("train", "eval", "export", "profile", "select")
FORWARD = 1 / 3  # a forward pass costs about a third of a forward and backward pass
FOLDED = 2 / 3  # attacks on the folded network (evaluation, export) cost about two thirds of the supernet's
EXPORT_SECONDS = 0.5  # per variant: ONNX export, onnx's checker, an ONNX Runtime session, the parity check
PROFILE_SECONDS = 0.15  # per variant on top of its timed runs: a session and ten warm-up runs
SELECT_SECONDS = 3.0  # selection, and the plot (importing matplotlib)
MEASURE_AFTER = 5  # steps timed before the first estimate (the first step, which warms up, is not counted)


@dataclass
class DemoWork:
    """What the demo will do, in the units the estimate prices."""

    batch_size: int
    train_pgd_steps: int
    attacked_share: float  # the λ > 0 samples of a batch, which training attacks
    lambdas: int
    variants: int  # (λ, width) pairs
    eval_images: int
    eval_pgd_steps: int
    verify_images: int
    profile_seconds: float  # the timed runs per variant

    def step_passes(self) -> float:
        """One training step: every image clean, the attacked ones through PGD and once more adversarially."""
        return self.batch_size * (1 + self.attacked_share * (self.train_pgd_steps + 1))

    def attack_passes(self, images: int) -> float:
        """PGD on `images` images for every λ on every width, plus the clean and adversarial forward passes."""
        return self.lambdas * images * (self.eval_pgd_steps + 2 * FORWARD) * FOLDED


class DemoClock:
    """Seconds left for the demo: measured per training step, then per stage as each one finishes."""

    def __init__(self, work: DemoWork) -> None:
        self.work = work
        self.per_pass: float | None = None  # seconds per image pass, measured in training
        self.attack_scale = 1.0  # evaluation's measured time over its estimate, applied to export's attacks
        self.steps_left = 0
        self.started: dict[str, float] = {}
        self._first_step: float | None = None

    def start(self, stage: str) -> None:
        self.started[stage] = time.perf_counter()

    def step(self, done: int, last: int) -> bool:
        """Called after each training step; True once, when the seconds per step are first known."""
        now = time.perf_counter()
        self.steps_left = last - done
        if done == 1:
            self._first_step = now
        if self.per_pass is not None and done < last:
            return False
        if last == 1:  # one step: its time, warm-up included, is all there is
            spent, steps = now - self.started.get("train", now), 1
        elif self._first_step is not None and done - 1 >= min(MEASURE_AFTER, last - 1):
            spent, steps = now - self._first_step, done - 1
        else:
            return False
        first = self.per_pass is None
        self.per_pass = spent / (steps * self.work.step_passes())
        return first

    def finished(self, stage: str) -> None:
        """Re-price what is left from what this stage took."""
        took = time.perf_counter() - self.started.get(stage, time.perf_counter())
        if stage == "eval" and self.per_pass:
            self.attack_scale = took / max(self.stage_seconds("eval"), 1e-9)

    @property
    def step_seconds(self) -> float | None:
        return None if self.per_pass is None else self.per_pass * self.work.step_passes()

    def stage_seconds(self, stage: str) -> float:
        """This stage's estimate (the measured seconds per pass must be known)."""
        w, per_pass = self.work, self.per_pass or 0.0
        if stage == "train":
            return self.steps_left * w.step_passes() * per_pass
        if stage == "eval":
            return w.attack_passes(w.eval_images) * per_pass
        if stage == "export":
            return w.attack_passes(w.verify_images) * per_pass * self.attack_scale + w.variants * EXPORT_SECONDS
        if stage == "profile":
            return w.variants * (w.profile_seconds + PROFILE_SECONDS)
        return SELECT_SECONDS

    def left(self, from_stage: str) -> float | None:
        """Seconds for `from_stage` and every stage after it; None before training has been timed."""
        if self.per_pass is None:
            return None
        return sum(self.stage_seconds(s) for s in STAGES[STAGES.index(from_stage):])


def duration(seconds: float) -> str:
    """`40 s`, `3 min 20 s`, `1 h 5 min`: rounded as an estimate deserves."""
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds / 10) * 10, 60)
        return f"{minutes:.0f} min" + (f" {rest:.0f} s" if rest else "")
    hours, rest = divmod(round(seconds / 300) * 300, 3600)
    return f"{hours:.0f} h" + (f" {rest / 60:.0f} min" if rest else "")
