"""oatdeploy: Once-for-All Adversarial Training from supernet to edge engines.

Importing this package never imports torch (the device runtime runs without it);
`load_checkpoint` pulls in the training side on first use.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from oatdeploy.supernet import Supernet

# pyproject's package-dir installs the checkout's top-level export/ and runtime/ as oatdeploy.export and
# oatdeploy.runtime. When this package is the checkout's own oatdeploy/ (Python started in the repository root
# shadows an installed copy, or the checkout is on sys.path), those folders sit beside it instead.
_HERE = Path(__file__).resolve().parent
_SIBLINGS = {f"{__name__}.{name}": _HERE.parent / name for name in ("export", "runtime")
             if not (_HERE / name).is_dir() and (_HERE.parent / name / "__init__.py").is_file()}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds oatdeploy.export/oatdeploy.runtime in a checkout; their submodules then follow their __path__."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        folder = _SIBLINGS.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


if _SIBLINGS and not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _CheckoutFinder())


def load_checkpoint(path: Any) -> Supernet:
    """Load a trained supernet (eval mode, CPU) from `supernet.pt`."""
    from oatdeploy.checkpoint import load_supernet

    return load_supernet(path)


__all__ = ["__version__", "load_checkpoint"]
