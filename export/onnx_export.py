"""Folded (or per-width shared) torch module → ONNX file, checked by onnx's own checker."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from oatdeploy.runtime.atomic import atomic_path
from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME, OUTPUT_NAME

OPSET = 17


def export_onnx(module: torch.nn.Module, path: str | Path, input_shape: tuple[int, int, int],
                shared: bool = False) -> Path:
    """Export with a dynamic batch axis; shared graphs take `lam_index` (int64 [1]) as a second input."""
    example = torch.zeros(2, *input_shape)
    args: tuple[torch.Tensor, ...] = (example, torch.zeros(1, dtype=torch.long)) if shared else (example,)
    names = [INPUT_NAME, LAM_INDEX_NAME] if shared else [INPUT_NAME]
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript exporter handles these small static graphs in milliseconds and exactly; torch
        # marks it deprecated in favour of the dynamo exporter, which is much slower here.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), args, str(tmp), input_names=names, output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    return Path(path)


def op_types(path: str | Path) -> list[str]:
    """The op type of every node, in graph order (tests and the manifest use it to prove plainness)."""
    return [node.op_type for node in onnx.load(str(path)).graph.node]
