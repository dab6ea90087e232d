"""Export side: folded/shared ONNX graphs, their verification, TensorRT engines and the manifest."""
