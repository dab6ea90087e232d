"""AutoAttack, standard version (Croce & Hein, ICML 2020), as RobustBench runs it.

The attacks come from `pyautoattack`, a packaging of the authors' implementation (fra31/auto-attack): its
APGD, FAB and Square modules are the upstream files, and its `version="standard"` sets the paper's
ensemble: APGD-CE (100 iterations, 1 restart), APGD-T (100 iterations, 9 target classes), FAB-T (100
iterations, 9 targets) and Square (5,000 queries, p_init 0.8). Each attack runs only on the samples that
every earlier one failed on, so a sample counts as robust only if all four fail. The settings written to
eval.json are read back from the attack objects, so they say what ran.

Images are attacked in chunks so that a progress bar can show the time left per variant; samples are
independent under AutoAttack, so chunking changes nothing but the random draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from oatdeploy.runtime.errors import OatError

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
SQUARE_QUERIES = 5000


@dataclass(frozen=True)
class AutoAttackConfig:
    """L∞ AutoAttack at `eps`. `square_queries` and `attacks` differ from the standard only where a test asks."""

    eps: float
    square_queries: int = SQUARE_QUERIES
    attacks: tuple[str, ...] = STANDARD
    seed: int = 0

    @property
    def standard(self) -> bool:
        return self.square_queries == SQUARE_QUERIES and self.attacks == STANDARD


def build_attack(module: nn.Module, cfg: AutoAttackConfig, num_classes: int, device: torch.device) -> Any:
    """pyautoattack's standard AutoAttack on `module`, with only what `cfg` changes changed."""
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise OatError("--attack autoattack needs pyautoattack (the authors' AutoAttack code): "
                       "pip install 'oatdeploy[attacks]'") from None
    unknown = sorted(set(cfg.attacks) - set(STANDARD))
    if unknown or not cfg.attacks:
        raise OatError(f"AutoAttack's standard attacks are {', '.join(STANDARD)}; got {list(cfg.attacks)}")
    aa = AutoAttack(module, norm="Linf", eps=cfg.eps, version="standard", seed=cfg.seed, device=device)
    aa.attacks_to_run = [a for a in STANDARD if a in cfg.attacks]
    aa.square.n_queries = cfg.square_queries
    targets = min(aa.apgd_targeted.n_target_classes, num_classes - 1)  # 9 for every dataset here (10 classes)
    aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = targets
    return aa


def describe(aa: Any, cfg: AutoAttackConfig) -> dict[str, Any]:
    """The attack and its settings as they are set on the objects that run (eval.json and the manifest)."""
    from pyautoattack import __version__

    return {
        "name": "autoattack", "version": "standard" if cfg.standard else "custom", "norm": "linf", "eps": cfg.eps,
        "attacks": list(aa.attacks_to_run),
        "steps": aa.apgd.n_iter,  # iterations of each gradient attack (APGD-CE, APGD-T, FAB-T)
        "apgd_ce": {"iterations": aa.apgd.n_iter, "restarts": aa.apgd.n_restarts, "loss": "ce"},
        "apgd_t": {"iterations": aa.apgd_targeted.n_iter, "restarts": aa.apgd_targeted.n_restarts,
                   "targets": aa.apgd_targeted.n_target_classes, "loss": "dlr-targeted"},
        "fab_t": {"iterations": aa.fab.n_iter, "restarts": 1, "targets": aa.fab.n_target_classes},
        "square": {"queries": aa.square.n_queries, "restarts": aa.square.n_restarts, "p_init": aa.square.p_init},
        "seed": cfg.seed, "source": f"pyautoattack {__version__} (fra31/auto-attack)",
    }


def correct_in_ball(module: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                    eps: float) -> torch.Tensor:
    """Per image, whether `module` still classifies the adversarial image right, judged by our own forward
    after checking that it lies in the ε-ball and in [0, 1] (so the RA never rests on the library's word)."""
    x_adv = x_adv.to(x.device)
    if (x_adv - x).abs().amax().item() > eps + 1e-5 or x_adv.amin().item() < 0.0 or x_adv.amax().item() > 1.0:
        raise RuntimeError("AutoAttack returned images outside the ε-ball or [0, 1]; not an admissible attack")
    with torch.no_grad():
        return module(x_adv).argmax(1) == y


class AutoAttackEval:
    """Robust accuracy of one folded (λ, width) network under AutoAttack, with a progress bar per variant."""

    def __init__(self, cfg: AutoAttackConfig, num_classes: int, batch_size: int = 256, progress: bool = True) -> None:
        self.cfg, self.num_classes, self.batch_size, self.progress = cfg, num_classes, batch_size, progress

    def describe(self) -> dict[str, Any]:
        return describe(build_attack(nn.Identity(), self.cfg, self.num_classes, torch.device("cpu")), self.cfg)

    def __call__(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, desc: str = "autoattack") -> torch.Tensor:
        """Per image of x, whether every attack fails on it. `module` must be in eval mode; x in [0, 1]."""
        if len(x) == 0:
            return torch.zeros(0, dtype=torch.bool)
        device = next(iter(module.parameters()), torch.empty(0)).device
        aa = build_attack(module, self.cfg, self.num_classes, device)
        # With a bar, at least ~10 updates, so it can estimate the time left even for a few hundred images.
        chunk = max(1, min(self.batch_size, math.ceil(len(x) / 10) if self.progress else len(x)))
        survived = []
        with tqdm(total=len(x), desc=desc, unit="img", disable=not self.progress) as bar:
            for i in range(0, len(x), chunk):
                xb, yb = x[i : i + chunk].to(device), y[i : i + chunk].to(device)
                x_adv, _ = aa.run_standard_evaluation(xb, yb, batch_size=chunk)
                survived.append(correct_in_ball(module, xb, x_adv, yb, self.cfg.eps).cpu())
                bar.update(len(xb))
                bar.set_postfix(ra=f"{float(torch.cat(survived).float().mean()):.3f}")
        return torch.cat(survived)
