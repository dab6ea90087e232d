"""Workstation side (torch): folded/shared ONNX graphs, their parity check, a new deployment folder.

Engine building, quantization and precision checks run on the device: they live in `oatdeploy.runtime`.

`export_deployment` is re-exported lazily so that importing this package does not import torch.
"""

from __future__ import annotations

import sys
from typing import Any

if __name__ != "oatdeploy.export":  # `import export` from a checkout's root would load every module twice
    raise ImportError(f"the export side is the package oatdeploy.export; import that, not {__name__}")
if getattr(sys.modules["oatdeploy"], "__file__", None) is None:  # the checkout, imported as a namespace package
    from oatdeploy.runtime.errors import checkout_as_namespace

    raise checkout_as_namespace(sys.modules["oatdeploy"])

__all__ = ["export_deployment"]


def __getattr__(name: str) -> Any:
    if name == "export_deployment":
        from oatdeploy.export.pipeline import export_deployment

        return export_deployment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
