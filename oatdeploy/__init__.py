"""oatdeploy: Once-for-All Adversarial Training from supernet to edge engines.

Importing this package never imports torch (the device runtime runs without it); the training side's
functions (`load_checkpoint`, ...) pull it in on first use.

The checkout keeps the device side (`runtime/`) and the workstation export (`export/`) beside this folder;
an installed copy has them inside it (pyproject's `package-dir`). In a checkout this package's `__path__`
also names the checkout's root, so `oatdeploy.runtime` is found there by Python's own path search. Either
way they are importable only as `oatdeploy.runtime` and `oatdeploy.export`: their `__init__` refuses any
other name, so no module can be loaded twice under two names.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if __name__ != "oatdeploy":  # e.g. `oatdeploy.oatdeploy` through the checkout root on __path__
    import sys

    if getattr(sys.modules.get("oatdeploy"), "__file__", None) is None:  # the checkout, as a namespace package
        from oatdeploy.runtime.errors import checkout_as_namespace

        raise checkout_as_namespace(sys.modules["oatdeploy"])
    raise ImportError(f"import oatdeploy, not {__name__}")

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pathlib import Path

    from oatdeploy.config import TrainConfig
    from oatdeploy.supernet import Supernet

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isdir(os.path.join(__path__[0], "runtime")) and os.path.isfile(
        os.path.join(_ROOT, "runtime", "__init__.py")):
    __path__.append(_ROOT)


def load_checkpoint(path: Any) -> Supernet:
    """Load a trained supernet (eval mode, CPU) from `supernet.pt`."""
    from oatdeploy.checkpoint import load_supernet

    return load_supernet(path)


def train(config: TrainConfig | None = None, *, resume: bool = False, progress: bool = True, **fields: Any) -> Path:
    """Train a supernet (a `TrainConfig`, or its fields as keywords: `train(out="runs/x", epochs=2)`); returns
    RUN/supernet.pt. `resume` continues the checkpoint in `out`."""
    from dataclasses import replace

    from oatdeploy.config import TrainConfig
    from oatdeploy.trainer import train as run

    config = replace(config, **fields) if config is not None else TrainConfig(**fields)
    return run(config, resume=resume, progress=progress)


# The rest of the pipeline, imported on first use (the workstation side needs torch and Python 3.10+):
LAZY = {
    "TrainConfig": "oatdeploy.config",  # every option of a training run
    "run_evaluation": "oatdeploy.evaluate",  # SA/RA per (λ, width) -> eval.json's layout
    "export_deployment": "oatdeploy.export.pipeline",  # fold, export, verify -> a deployment folder
    "run_demo": "oatdeploy.demo",  # train -> evaluate -> export -> profile -> select on the embedded data
}


def __getattr__(name: str) -> Any:
    if name in LAZY:
        import importlib

        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TrainConfig", "__version__", "export_deployment", "load_checkpoint", "run_demo", "run_evaluation",
           "train"]
