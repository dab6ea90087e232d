"""Real deployment folders without torch, for the device-side tests (Python 3.8+, numpy + onnx + ONNX Runtime).

Each variant is a small real network (Conv → ReLU → GlobalAveragePool → Gemm) with its own random weights,
written with onnx.helper and laid out exactly as `oatdeploy export` lays a deployment out (manifest v1
through export's own manifest builder, calib.npz, verify/clean.npz, verify/<id>.npz). Labels are the fp32
model's own predictions, so fp32 clean accuracy is 1.0 and reduced precision can only lose from there.
Shared mode keeps one graph per width with a per-λ channel scale chosen by an int64 `lam_index` input.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from oatdeploy.export.manifest import OUTCOMES, file_entry, new_manifest, outcomes_entry, variant_entry, write_manifest
from oatdeploy.runtime.folder import update_manifest
from oatdeploy.runtime.manifest import (
    FileRef,
    Manifest,
    Metrics,
    MetricsSource,
    Model,
    Source,
    ThreatModel,
    Verification,
    outcome_array,
    variant_id,
)
from oatdeploy.runtime.stats import wilson_interval

SHAPE = (1, 8, 8)
CLASSES = 10
LAMBDAS = [0.0, 0.4, 1.0]
WIDTHS = [0.5, 1.0]


def conv_net(seed: int, width: float, shared: bool = False) -> bytes:
    """A serialized ONNX model: input float32 [N, 1, 8, 8] (and lam_index int64 [1]) -> logits [N, 10]."""
    rng = np.random.default_rng(seed)
    channels = max(2, int(8 * width))
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (channels, SHAPE[0], 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, channels).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.5, (CLASSES, channels)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.normal(0, 0.1, CLASSES).astype(np.float32), "fc_b")]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *SHAPE])]
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["conv"], pads=[1, 1, 1, 1])]
    conv = "conv"
    if shared:
        scales = rng.uniform(0.5, 1.5, (len(LAMBDAS), channels)).astype(np.float32)
        inits += [numpy_helper.from_array(scales, "scale"),
                  numpy_helper.from_array(np.array([1, channels, 1, 1], dtype=np.int64), "scale_shape")]
        inputs.append(helper.make_tensor_value_info("lam_index", TensorProto.INT64, [1]))
        nodes += [helper.make_node("Gather", ["scale", "lam_index"], ["row"], axis=0),
                  helper.make_node("Reshape", ["row", "scale_shape"], ["s4"]),
                  helper.make_node("Mul", ["conv", "s4"], ["scaled"])]
        conv = "scaled"
    nodes += [helper.make_node("Relu", [conv], ["relu"]),
              helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
              helper.make_node("Flatten", ["pool"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1)]
    output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])
    graph = helper.make_graph(nodes, "tiny", inputs, [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime that still supports Python 3.8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def predict(model: bytes, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed: dict[str, Any] = {"input": x}
    if lam_index is not None:
        feed["lam_index"] = np.array([lam_index], dtype=np.int64)
    return session.run(None, feed)[0]


def save_npz(folder: Path, rel: str, **arrays: np.ndarray) -> FileRef:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (folder / rel).parent.mkdir(parents=True, exist_ok=True)
    (folder / rel).write_bytes(buf.getvalue())
    return file_entry(folder, rel)


def make_deployment(folder: Path, mode: str = "folded", samples: int = 32, seed: int = 0) -> Path:
    """Write a deployment folder like `oatdeploy export` does; SA/RA differ per variant (RA rises with λ)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.random((samples, *SHAPE), dtype=np.float32)
    manifest = new_manifest(
        model=Model(list(SHAPE), LAMBDAS, WIDTHS, CLASSES, "tiny", "random", [0.0, 1.0], True),
        threat_model=ThreatModel("linf", 0.1, "pgd", 2),
        source=Source("none", "0" * 64),
        metrics=MetricsSource("deploykit", {"name": "pgd", "steps": 2, "eps": 0.1}, samples),
        calibration=save_npz(folder, "calib.npz", x=rng.random((samples, *SHAPE), dtype=np.float32)),
        clean=save_npz(folder, "verify/clean.npz", x=x, y=np.zeros(samples, dtype=np.int64)),
    )
    labels = None
    for wi, width in enumerate(WIDTHS):
        for li, lam in enumerate(LAMBDAS):
            vid = variant_id(lam, width)
            if mode == "folded":
                rel, lam_index, model = f"{vid}.onnx", None, conv_net(seed * 100 + wi * 10 + li, width)
            else:
                rel, lam_index, model = f"w{width:g}.onnx", li, conv_net(seed * 100 + wi, width, shared=True)
            (folder / rel).write_bytes(model)
            y = predict(model, x, lam_index).argmax(1)
            labels = y if labels is None else labels
            x_adv = np.clip(x + rng.normal(0, 0.05, x.shape).astype(np.float32), 0, 1)
            save_npz(folder, f"verify/{vid}.npz", x_adv=x_adv, y=predict(model, x_adv, lam_index).argmax(1))
            metrics = Metrics(round(0.9 - 0.05 * li + 0.04 * wi, 3), round(0.3 + 0.2 * li + 0.03 * wi, 3),
                              attack="pgd-2", samples=samples)
            manifest.variants.append(variant_entry(folder, lam, width, mode, rel, (1000, 2000), metrics,
                                                   Verification(0.0, 1.0, samples), f"verify/{vid}.npz", lam_index))
    # clean labels: the first variant's predictions (every variant is its own network, so SA differs per variant)
    manifest.verification["clean"] = save_npz(folder, "verify/clean.npz", x=x, y=labels)
    write_manifest(folder, manifest)
    return folder


def set_outcomes(folder: Path, outcomes: dict[str, tuple[list[bool], list[bool]]]) -> None:
    """Give variants per-image outcomes (clean, robust) on shared images, as export writes them from eval.json,
    and the SA/RA and Wilson intervals those outcomes make; variants not named keep no outcomes."""
    samples = len(next(iter(outcomes.values()))[0])
    arrays = {outcome_array(vid, kind): np.packbits(np.array(bits, dtype=bool))
              for vid, pair in outcomes.items() for kind, bits in zip(("clean", "robust"), pair)}
    ref = save_npz(folder, OUTCOMES, **arrays)

    def edit(m: Manifest) -> None:
        m.outcomes = outcomes_entry(ref, samples)
        for v in m.variants:
            if v.id in outcomes:
                (sa, ra), n = (sum(b) / samples for b in outcomes[v.id]), samples
                v.metrics = Metrics(sa, ra, list(wilson_interval(round(sa * n), n)),
                                    list(wilson_interval(round(ra * n), n)), n, "pgd-2")

    update_manifest(folder, edit)


def edit_manifest(folder: Path, edit: Any) -> dict[str, Any]:
    """Change manifest.json by hand (as a user or an attacker could), bypassing oatdeploy's writer."""
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def set_profile(folder: Path, key: str, latencies: dict[str, float], power: dict[str, Any] | None = None) -> None:
    """Record p50 latencies under `key` for the given variant ids, as `oatdeploy profile` would."""
    def edit(m: dict[str, Any]) -> None:
        for v in m["variants"]:
            if v["id"] in latencies:
                entry = {"backend": key.split("|")[1], "batch": 1, "precision": "fp32", "p50_ms": latencies[v["id"]],
                         "p95_ms": latencies[v["id"]] * 1.1, "runs": 50}
                if power is not None:
                    entry["power"] = power
                v.setdefault("latency", {})[key] = entry

    edit_manifest(folder, edit)


def oatdeploy(*args: str) -> subprocess.CompletedProcess:
    """The console entry point in a subprocess: exit code, stdout and stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "oatdeploy.cli", *args], capture_output=True, text=True, timeout=300)
