"""Parameter count and FLOPs of an exported graph, read from the ONNX file itself.

FLOPs count a multiply-add as two operations (FLOPs = 2·MACs) for Conv and Gemm/MatMul; adds, ReLUs and pooling are
left out, as is usual, because they are negligible next to the convolutions.
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx
from onnx import numpy_helper, shape_inference


def graph_cost(path: str | Path, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """(params, FLOPs) at batch 1; params are every stored weight (a shared graph's λ tables included)."""
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    graph_input = model.graph.input[0]
    dims = graph_input.type.tensor_type.shape.dim
    dims[0].ClearField("dim_param")
    dims[0].dim_value = 1
    for d, v in zip(dims[1:], input_shape, strict=True):
        d.dim_value = v
    inferred = shape_inference.infer_shapes(model)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    flops = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            weight = init[node.input[1]]
            out = shapes[node.output[0]]
            flops += 2 * math.prod(out[1:]) * math.prod(weight.shape[1:])
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in init:
            flops += 2 * math.prod(init[node.input[1]].shape)
    return sum(int(a.size) for a in init.values()), flops
