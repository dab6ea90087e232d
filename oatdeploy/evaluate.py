"""Clean (SA) and robust (RA) accuracy for every (λ, width) of a supernet: the eval.json numbers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from oatdeploy.attacks import PGDConfig, frozen_eval, pgd_attack
from oatdeploy.errors import OatError
from oatdeploy.supernet import Supernet

ATTACKS = ("pgd", "apgd-ce", "autoattack")


class RobustAccuracy(Protocol):
    """An attack as evaluation uses it: its description for eval.json, and RA of one folded network."""

    def describe(self) -> dict[str, Any]: ...

    def __call__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, desc: str) -> float: ...


def accuracy(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             attack: PGDConfig | None, batch_size: int = 256, seed: int = 0) -> float:
    """Top-1 accuracy of `fn` on x (clean when `attack` is None, else under that attack)."""
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        if attack is not None:
            xb = pgd_attack(fn, xb, yb, attack, generator=gen)
        with torch.no_grad():
            correct += int((fn(xb).argmax(1) == yb).sum())
    return correct / max(len(x), 1)


class PGDEval:
    """L∞ PGD (this project's `pgd_attack`, the attack OAT trains with)."""

    def __init__(self, cfg: PGDConfig, batch_size: int = 256) -> None:
        self.cfg, self.batch_size = cfg, batch_size

    def describe(self) -> dict[str, Any]:
        return self.cfg.describe()

    def __call__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, desc: str = "") -> float:
        return accuracy(module, x, y, self.cfg, self.batch_size)


class APGDEval:
    """APGD-CE alone (100 iterations), from adversarial-robustness-toolbox."""

    def __init__(self, eps: float, num_classes: int, batch_size: int = 256) -> None:
        self.eps, self.num_classes, self.batch_size = eps, num_classes, batch_size

    def describe(self) -> dict[str, Any]:
        return {"name": "apgd-ce", "norm": "linf", "eps": self.eps, "steps": 100, "source": "art"}

    def __call__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, desc: str = "") -> float:
        return apgd_accuracy(module, x, y, self.eps, self.num_classes, self.batch_size)


def evaluate_supernet(sn: Supernet, x: torch.Tensor, y: torch.Tensor, attack: PGDConfig | RobustAccuracy,
                      batch_size: int = 256, progress: bool = True,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """SA and RA per (λ, width), in the eval.json layout.

    Attacks run on the folded subnetwork in eval mode: the same function as the supernet (tests hold them
    to 1e-4), about a third cheaper per attack step, and exactly what export ships.
    """
    robust = PGDEval(attack, batch_size) if isinstance(attack, PGDConfig) else attack
    pairs = [(lam, w) for w in sn.widths for lam in sn.lambdas]
    results = []
    device = next(sn.model.parameters()).device
    own_bars = getattr(robust, "progress", False)  # an attack with a bar per variant replaces the overall one
    with frozen_eval(sn.model):
        for i, (lam, w) in enumerate(tqdm(pairs, desc="eval", unit="variant", disable=not progress or own_bars)):
            fn = sn.subnet(lam, w).to(device)
            desc = f"{robust.describe()['name']} {i + 1}/{len(pairs)} λ={lam:g} w={w:g}"
            results.append({
                "lambda": lam,
                "width": w,
                "clean_acc": accuracy(fn, x, y, None, batch_size),
                "robust_acc": robust(fn, x, y, desc),
            })
    return {"attack": robust.describe(), "num_samples": len(x), **(extra or {}), "results": results}


def format_table(report: dict[str, Any]) -> str:
    """A short table: one row per λ, clean (SA) and robust (RA) accuracy per width."""
    rows = report["results"]
    lambdas = sorted({r["lambda"] for r in rows})
    widths = sorted({r["width"] for r in rows})
    cell = {(r["lambda"], r["width"]): r for r in rows}
    head = f"{'λ':<6}" + "".join(f"  {'w=' + format(w, 'g'):>7} {'SA':>5} {'RA':>5}" for w in widths)
    lines = [head, "-" * len(head)]
    for lam in lambdas:
        vals = "".join(f"  {'':>7} {cell[lam, w]['clean_acc']:5.3f} {cell[lam, w]['robust_acc']:5.3f}" for w in widths)
        lines.append(f"{lam:<6g}{vals}")
    return "\n".join(lines)


def apgd_accuracy(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int,
                  batch_size: int = 256) -> float:
    """Robust accuracy under APGD-CE (Croce & Hein) from adversarial-robustness-toolbox."""
    try:
        from art.attacks.evasion import AutoProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        raise OatError("--attack apgd-ce needs adversarial-robustness-toolbox: "
                       "pip install 'oatdeploy[attacks]'") from None
    clf = PyTorchClassifier(model=module, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                            nb_classes=num_classes, clip_values=(0.0, 1.0), device_type="cpu")
    attack = AutoProjectedGradientDescent(estimator=clf, norm=np.inf, eps=eps, eps_step=2 * eps / 10, max_iter=100,
                                          targeted=False, nb_random_init=1, batch_size=batch_size,
                                          loss_type="cross_entropy", verbose=False)
    x_adv = torch.from_numpy(attack.generate(x=x.numpy(), y=y.numpy()))
    with torch.no_grad():
        return float((module(x_adv).argmax(1) == y).float().mean())


def make_attack(name: str, eps: float, num_classes: int, pgd_steps: int = 20, batch_size: int = 256,
                progress: bool = True) -> RobustAccuracy:
    """The attack `oatdeploy eval --attack NAME` runs; AutoAttack is always the standard version here."""
    if name == "pgd":
        return PGDEval(PGDConfig(eps=eps, steps=pgd_steps), batch_size)
    if name == "apgd-ce":
        return APGDEval(eps, num_classes, batch_size)
    if name == "autoattack":
        from oatdeploy.autoattack import AutoAttackConfig, AutoAttackEval

        return AutoAttackEval(AutoAttackConfig(eps=eps), num_classes, batch_size, progress)
    raise OatError(f"--attack must be one of {', '.join(ATTACKS)}, got {name!r}")


def run_evaluation(checkpoint: str | Path, pgd_steps: int = 20, eps: float | None = None, limit: int | None = None,
                   data_dir: str | None = None, batch_size: int = 256, attack: str = "pgd",
                   progress: bool = True, val_split: bool = False) -> dict[str, Any]:
    """Evaluate a checkpoint on its dataset's test split, or the reference's validation split (`oatdeploy eval`)."""
    from oatdeploy import data as datasets
    from oatdeploy.atomic import sha256_file
    from oatdeploy.checkpoint import load_supernet

    sn = load_supernet(checkpoint)
    cfg = sn.config
    split = "val" if val_split else "test"
    data = datasets.load_dataset(cfg["dataset"], data_dir=data_dir or cfg.get("data_dir"), split=split, limit=limit)
    robust = make_attack(attack, float(cfg["eps"] if eps is None else eps), sn.num_classes, pgd_steps, batch_size,
                         progress)
    extra = {"dataset": cfg["dataset"], "split": split, "split_note": datasets.split_note(cfg["dataset"], split, False),
             "checkpoint_sha256": sha256_file(checkpoint)}
    return evaluate_supernet(sn, data.x, data.y, robust, batch_size, progress, extra)
