"""Each rank's random streams in a checkpoint, and resuming with another number of processes.

Each rank draws its own λs, PGD starts and augmentations, so each rank's generators are saved and
restored per rank. Resuming with another number of processes works: a global step covers the same
samples whatever the number of ranks (DistributedSampler deals sample i of the shuffled epoch to rank
i mod W, and each rank takes batch/W of its share), so data order, schedule, model and optimizer
continue exactly; only the per-rank random streams cannot map onto a new number of ranks, and are
seeded afresh from (seed, rank, step). The run is then a valid continuation, not a bit-exact one.

A resume may also train longer: a larger --max-steps continues the same schedule, a larger --epochs
stretches the cosine schedule to the new length (the learning rate continues at the new schedule's value
for the step reached). train.log says where the resume began.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from oatdeploy.runtime.errors import OatError


@dataclass
class RankStreams:
    """One rank's random generators: λ draws, PGD random starts, augmentation."""

    lam: torch.Generator
    attack: torch.Generator
    aug: torch.Generator

    @classmethod
    def seeded(cls, seed: int, rank: int, step: int = 0) -> RankStreams:
        """Fresh streams; at step 0 the seeds every run has always used, later ones drawn from (seed, rank, step)."""
        if step == 0:
            seeds = [seed + 1000 * rank, seed + 1000 * rank + 1, seed + 7 + 1000 * rank]
        else:
            seeds = [int(s) for s in np.random.SeedSequence([seed, rank, step]).generate_state(3, np.uint64) >> 1]
        return cls(*(torch.Generator().manual_seed(s) for s in seeds))

    def state(self) -> dict[str, torch.Tensor]:
        return {"lam_gen": self.lam.get_state(), "attack_gen": self.attack.get_state(), "aug_gen": self.aug.get_state()}

    def load(self, state: Mapping[str, torch.Tensor]) -> None:
        self.lam.set_state(state["lam_gen"])
        self.attack.set_state(state["attack_gen"])
        self.aug.set_state(state["aug_gen"])


def restore_streams(trainer_state: Mapping[str, Any], seed: int, rank: int, world_size: int,
                    step: int) -> tuple[RankStreams, str | None]:
    """This rank's streams from a checkpoint, and a note when they had to be seeded afresh."""
    per_rank = trainer_state.get("rank_streams")
    saved_world = int(trainer_state.get("world_size", 1))
    if per_rank is None and saved_world == 1 and "lam_gen" in trainer_state:  # checkpoints before per-rank states
        per_rank = [{k: trainer_state[k] for k in ("lam_gen", "attack_gen", "aug_gen")}]
    streams = RankStreams.seeded(seed, rank)
    if per_rank is not None and len(per_rank) == world_size:
        streams.load(per_rank[rank])
        return streams, None
    note = (f"resumed with {world_size} process(es); the checkpoint has random streams for "
            f"{len(per_rank) if per_rank is not None else 'an unknown number of'} rank(s): data order, schedule, model "
            "and optimizer continue exactly, the per-rank λ/PGD/augmentation streams are seeded afresh")
    return RankStreams.seeded(seed, rank, step), note


def continuation(step: int, stop_at: int, total: int, saved_total: int, max_steps: int | None) -> str:
    """Where a resumed run begins and how far it goes, as train.log records it; a run told to stop before the
    steps it has already done is refused (a checkpoint cannot be trained backwards)."""
    if stop_at < step:
        asked = f"--max-steps {max_steps}" if max_steps is not None and max_steps < total else \
            f"--epochs for {total} steps"
        raise OatError(f"--resume: the run has already done {step} steps, more than {asked}; pass a larger "
                       f"--max-steps or --epochs to train it longer, or leave them out to finish it")
    line = f"resumed at step {step}; runs to step {stop_at}"
    if total != saved_total:
        line += (f"; --epochs changes the cosine schedule from {saved_total} to {total} steps, so the learning "
                 f"rate continues at its value for step {step} of {total}")
    if stop_at == step:
        line += (f": nothing left to train, --max-steps {max_steps} stops it here (pass a larger one to train longer)"
                 if max_steps is not None and max_steps < total else
                 ": nothing left to train, the run has done its --epochs (pass a larger --epochs to train longer)")
    return line


def rescheduled(optimizer: torch.optim.Optimizer, total: int, step: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The cosine schedule over `total` steps, at `step`: each group's learning rate as that schedule has it there
    (torch's closed form when a scheduler starts at a later step), for a run whose --epochs changed on resume."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total, 1), last_epoch=step - 1)
