"""oatdeploy: Once-for-All Adversarial Training from supernet to edge engines.

Importing this package never imports torch (the device runtime runs without it);
`load_checkpoint` pulls in the training side on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from oatdeploy.supernet import Supernet


def load_checkpoint(path: Any) -> Supernet:
    """Load a trained supernet (eval mode, CPU) from `supernet.pt`."""
    from oatdeploy.checkpoint import load_supernet

    return load_supernet(path)


__all__ = ["__version__", "load_checkpoint"]
