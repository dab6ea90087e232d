"""Clean (SA) and robust (RA) accuracy for every (λ, width) of a supernet: the eval.json numbers."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from oatdeploy.attacks import PGDConfig, frozen_eval, pgd_attack
from oatdeploy.devices import eval_batch_size, ieee_fp32, module_device, resolve_device, to_device
from oatdeploy.eval_files import ATTACKS
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.manifest import ACCURACIES, same_choice
from oatdeploy.runtime.stats import paired_difference_interval, wilson_interval
from oatdeploy.supernet import Supernet


class RobustAccuracy(Protocol):
    """An attack as evaluation uses it: its description for eval.json, and per image whether one folded
    network survives it (the outcomes give RA, its interval and paired comparisons)."""

    def describe(self) -> dict[str, Any]: ...

    def __call__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, desc: str) -> torch.Tensor: ...


def correct_mask(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 attack: PGDConfig | None, batch_size: int = 256, seed: int = 0) -> torch.Tensor:
    """Per image (on the CPU), whether `fn` gets it right (clean when `attack` is None, else under that attack).

    Batches go to `fn`'s device (a module's parameters say which); the PGD starts come from one CPU generator
    in image order, so the outcome depends neither on the device nor on the batch size.
    """
    gen = torch.Generator().manual_seed(seed)
    device = module_device(fn)
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = to_device(x[i : i + batch_size], device), to_device(y[i : i + batch_size], device)
        if attack is not None:
            xb = pgd_attack(fn, xb, yb, attack, generator=gen)
        with torch.no_grad():
            out.append(fn(xb).argmax(1) == yb)
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.bool)


def accuracy(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             attack: PGDConfig | None, batch_size: int = 256, seed: int = 0) -> float:
    """Top-1 accuracy of `fn` on x (clean when `attack` is None, else under that attack)."""
    return float(correct_mask(fn, x, y, attack, batch_size, seed).float().mean()) if len(x) else 0.0


def accuracy_fields(kind: str, correct: torch.Tensor) -> dict[str, Any]:
    """`<kind>_acc`, its 95 % Wilson interval and the per-image outcomes (hex bitmask, for paired comparisons).

    An accuracy on n images is uncertain by about ±1/√n; the interval says how much, so that a reader
    (and `select`) does not take a 1–2 point difference on 500 images for a real one.
    """
    n, k = len(correct), int(correct.sum())
    return {f"{kind}_acc": k / n if n else 0.0, f"{kind}_ci95": list(wilson_interval(k, n)),
            f"{kind}_correct": pack_mask(correct)}


def pack_mask(mask: torch.Tensor) -> str:
    """Booleans → hex string (4 images per character), most significant bit first."""
    bits = np.packbits(mask.cpu().numpy().astype(np.uint8))
    return bits.tobytes().hex()


def unpack_mask(text: str, n: int) -> np.ndarray:
    """The inverse of `pack_mask` for n images."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


class PGDEval:
    """L∞ PGD (this project's `pgd_attack`, the attack OAT trains with)."""

    def __init__(self, cfg: PGDConfig, batch_size: int = 256) -> None:
        self.cfg, self.batch_size = cfg, batch_size

    def describe(self) -> dict[str, Any]:
        return self.cfg.describe()

    def __call__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, desc: str = "") -> torch.Tensor:
        return correct_mask(module, x, y, self.cfg, self.batch_size)


class APGDEval:
    """APGD-CE alone (100 iterations), from adversarial-robustness-toolbox."""

    def __init__(self, eps: float, num_classes: int, batch_size: int = 256) -> None:
        self.eps, self.num_classes, self.batch_size = eps, num_classes, batch_size

    def describe(self) -> dict[str, Any]:
        return {"name": "apgd-ce", "norm": "linf", "eps": self.eps, "steps": 100, "source": "art"}

    def __call__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, desc: str = "") -> torch.Tensor:
        return apgd_correct(module, x, y, self.eps, self.num_classes, self.batch_size)


def evaluate_supernet(sn: Supernet, x: torch.Tensor, y: torch.Tensor, attack: PGDConfig | RobustAccuracy,
                      batch_size: int = 256, progress: bool = True, extra: dict[str, Any] | None = None,
                      widths: list[float] | None = None) -> dict[str, Any]:
    """SA and RA per (λ, width) (every trained width, or those in `widths`), in the eval.json layout.

    Attacks run on the folded subnetwork in eval mode: the same function as the supernet (tests hold them
    to 1e-4), about a third cheaper per attack step, and exactly what export ships.
    """
    robust = PGDEval(attack, batch_size) if isinstance(attack, PGDConfig) else attack
    pairs = [(lam, w) for w in (sn.widths if widths is None else [sn.widths[sn.width_index(v)] for v in widths])
             for lam in sn.lambdas]
    results = []
    device = sn.device
    own_bars = getattr(robust, "progress", False)  # an attack with a bar per variant replaces the overall one
    with frozen_eval(sn.model):
        for i, (lam, w) in enumerate(tqdm(pairs, desc="eval", unit="variant", disable=not progress or own_bars)):
            fn = sn.subnet(lam, w).to(device)
            desc = f"{robust.describe()['name']} {i + 1}/{len(pairs)} λ={lam:g} w={w:g}"
            results.append({
                "lambda": lam,
                "width": w,
                "n": len(x),
                **accuracy_fields("clean", correct_mask(fn, x, y, None, batch_size)),
                **accuracy_fields("robust", robust(fn, x, y, desc)),
            })
    return {"attack": robust.describe(), "num_samples": len(x), **(extra or {}), "results": results}


def format_table(report: dict[str, Any]) -> str:
    """One row per λ: clean (SA) and robust (RA) accuracy per width, each with its 95 % interval."""
    rows = report["results"]
    lambdas = sorted({r["lambda"] for r in rows})
    widths = sorted({r["width"] for r in rows})
    cell = {(r["lambda"], r["width"]): r for r in rows}

    def acc(r: dict[str, Any], kind: str) -> str:
        ci = r.get(f"{kind}_ci95")
        return f"{r[f'{kind}_acc']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    cols = [(w, kind) for w in widths for kind in ACCURACIES]
    texts = {(lam, w, k): acc(cell[lam, w], k) for lam in lambdas for w, k in cols}
    size = max(len(t) for t in texts.values())
    head = f"{'λ':<6}" + "".join(f"  {('SA' if k == 'clean' else 'RA') + f' w={w:g}':>{size}}" for w, k in cols)
    lines = [head, "-" * len(head)]
    lines += [f"{lam:<6g}" + "".join(f"  {texts[lam, w, k]:>{size}}" for w, k in cols) for lam in lambdas]
    n = rows[0].get("n") if rows else None
    if n:
        lines.append(f"(95 % intervals on {n} test images)")
    return "\n".join(lines)


def knob_summary(report: dict[str, Any], width: float | None = None) -> list[str]:
    """What turning λ does at one width (the largest by default), in points with paired 95 % intervals.

    SA from λ = 0 to the largest λ, RA from the smallest λ > 0 to the largest: the two moves the knob
    promises. Paired on the same test images, so a real 2-point move is told apart from noise.
    """
    rows = report["results"]
    width = max(r["width"] for r in rows) if width is None else width
    by_lam = {r["lambda"]: r for r in rows if same_choice(r["width"], width) and "clean_correct" in r}
    positive = sorted(v for v in by_lam if v > 0)
    if not positive:
        return []
    n = by_lam[positive[0]]["n"]

    def move(kind: str, a: float, b: float) -> tuple[float, float, float]:
        return paired_difference_interval(list(unpack_mask(by_lam[a][f"{kind}_correct"], n)),
                                          list(unpack_mask(by_lam[b][f"{kind}_correct"], n)))

    lines = []
    for kind, label, lams, sign in (("clean", "SA", sorted(by_lam), -1), ("robust", "RA", positive, +1)):
        if len(lams) < 2:
            continue
        diff, lo, hi = move(kind, lams[0], lams[-1])
        verdict = "beyond noise" if lo > 0 or hi < 0 else "within noise"
        # Monotone within noise: no step between neighbouring λs goes the wrong way beyond its interval.
        steps = {(a, b): move(kind, a, b) for a, b in itertools.pairwise(lams)}
        against = [f"{a:g}→{b:g}" for (a, b), (_, lo_ab, hi_ab) in steps.items()
                   if (lo_ab > 0 if sign < 0 else hi_ab < 0)]
        monotone = "monotone within noise" if not against else f"NOT monotone ({', '.join(against)})"
        lines.append(f"width {width:g}, λ {lams[0]:g} → {lams[-1]:g}: {label} {100 * diff:+.1f} points "
                     f"(95 % interval {100 * lo:+.1f} to {100 * hi:+.1f}, paired on {n} images: {verdict}; "
                     f"{monotone})")
    return lines


def apgd_correct(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int,
                 batch_size: int = 256) -> torch.Tensor:
    """Per image, whether `module` survives APGD-CE (Croce & Hein) from adversarial-robustness-toolbox."""
    try:
        from art.attacks.evasion import AutoProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        raise OatError("--attack apgd-ce needs adversarial-robustness-toolbox: "
                       "pip install 'oatdeploy[attacks]'") from None
    device = module_device(module)
    # ART runs on the current CUDA device when told "gpu": make that the module's.
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        clf = PyTorchClassifier(model=module, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=num_classes, clip_values=(0.0, 1.0),
                                device_type="gpu" if device.type == "cuda" else "cpu")
    attack = AutoProjectedGradientDescent(estimator=clf, norm=np.inf, eps=eps, eps_step=2 * eps / 10, max_iter=100,
                                          targeted=False, nb_random_init=1, batch_size=batch_size,
                                          loss_type="cross_entropy", verbose=False)
    x_adv = torch.from_numpy(attack.generate(x=x.cpu().numpy(), y=y.cpu().numpy()))
    with torch.no_grad():
        return (module(x_adv.to(device)).argmax(1) == y.to(device)).cpu()


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
                   data_dir: str | None = None, batch_size: int | None = None, attack: str = "pgd",
                   progress: bool = True, val_split: bool = False,
                   widths: list[float] | None = None, device: str = "auto") -> dict[str, Any]:
    """Evaluate a checkpoint on its dataset's test split, or the reference's validation split (`oatdeploy eval`),
    on `device` (devices.resolve_device), in batches of `batch_size` (default: devices.eval_batch_size)."""
    from oatdeploy import data as datasets
    from oatdeploy.checkpoint import load_supernet
    from oatdeploy.runtime.atomic import sha256_file

    dev = resolve_device(device)
    batch_size = batch_size or eval_batch_size(dev)
    sn = load_supernet(checkpoint).to(dev)
    cfg = sn.config
    split = "val" if val_split else "test"
    folder = datasets.data_dir_for(data_dir, cfg)
    data = datasets.load_dataset(cfg["dataset"], data_dir=folder, split=split, limit=limit)
    robust = make_attack(attack, float(cfg["eps"] if eps is None else eps), sn.num_classes, pgd_steps, batch_size,
                         progress)
    extra = {"dataset": cfg["dataset"], "split": split, "split_note": datasets.split_note(cfg["dataset"], split, False),
             "checkpoint_sha256": sha256_file(checkpoint)}
    with ieee_fp32(dev):
        return evaluate_supernet(sn, data.x, data.y, robust, batch_size, progress, extra, widths)
