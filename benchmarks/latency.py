"""Latency side by side in one process, ONNX Runtime CPU: supernet (eager torch) vs our folded and shared
exports vs a plain ResNet of the same shape (conv → BN, no FiLM; ONNX Runtime fuses its BN into the conv).

    python benchmarks/latency.py [--checkpoint RUN/supernet.pt] [--arch resnet20] [--batches 1,32]

Prints p50 latencies and the ratios folded/plain (goal ≤ 1.05), supernet/folded and shared/folded, and
writes benchmarks/results/latency_<host>.json. Without --checkpoint it uses a randomly initialised
supernet: latency does not depend on the weights.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

import oatdeploy
from oatdeploy.export.onnx_export import export_onnx
from oatdeploy.lambdas import build_table
from oatdeploy.models import create_model
from oatdeploy.models.plain import FoldedConv
from oatdeploy.runtime.atomic import atomic_write_json
from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.backends.ort import OrtRunner
from oatdeploy.runtime.device import cpu_name
from oatdeploy.runtime.profile import measure
from oatdeploy.supernet import Supernet

SETTLE_S = 0.5


class ConvBN(nn.Module):
    """What a normally trained plain ResNet exports: a bias-free conv followed by an inference BN."""

    def __init__(self, folded: FoldedConv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(folded.in_channels, folded.out_channels, folded.kernel_size, folded.stride,
                              folded.padding, bias=False)
        self.bn = nn.BatchNorm2d(folded.out_channels).eval()
        with torch.no_grad():
            self.conv.weight.copy_(folded.weight)
            self.bn.bias.copy_(folded.bias)
            self.bn.running_var.fill_(1.0 - self.bn.eps)

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        return self.bn(self.conv(x))


def plain_resnet(folded: nn.Module) -> nn.Module:
    """The folded net with every conv+bias turned back into conv → BN (same function, a standard graph)."""
    for name, child in folded.named_children():
        if isinstance(child, FoldedConv):
            setattr(folded, name, ConvBN(child))
        else:
            plain_resnet(child)
    return folded


class EagerRunner(Runner):
    """The supernet itself, as a user would run it without oatdeploy's export."""

    label = "supernet"

    def __init__(self, sn: Supernet, lam: float, width: float) -> None:
        self.sn, self.lam, self.width = sn, lam, width

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        return self.sn.predict(torch.from_numpy(x), self.lam, self.width).numpy()


def random_supernet(arch: str, widths: list[float], shape: tuple[int, int, int]) -> Supernet:
    lambdas = [0.0, 0.1, 0.2, 0.3, 0.4, 1.0]
    model = create_model(arch, widths=widths, num_classes=10, in_channels=shape[0])
    config = {"arch": arch, "lambdas": lambdas, "widths": widths, "input_shape": list(shape), "num_classes": 10}
    return Supernet(model, config, build_table("rand", lambdas))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--input-shape", default="1,28,28")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--lam", type=float, default=0.4)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results") / f"latency_{platform.node()}.json")
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.input_shape.split(","))
    sn = (oatdeploy.load_checkpoint(args.checkpoint) if args.checkpoint
          else random_supernet(args.arch, [0.5, 1.0], shape))
    shape = sn.input_shape
    started = time.time()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for width in sn.widths:
            li = sn.lam_index(args.lam)
            paths = {
                "folded": export_onnx(sn.subnet(args.lam, width), Path(tmp) / f"folded{width}.onnx", shape),
                "shared": export_onnx(sn.shared_subnet(width), Path(tmp) / f"shared{width}.onnx", shape, shared=True),
                "plain": export_onnx(plain_resnet(sn.subnet(args.lam, width)), Path(tmp) / f"plain{width}.onnx",
                                     shape),
            }
            runners: dict[str, Runner] = {"supernet": EagerRunner(sn, args.lam, width)}
            runners.update({k: OrtRunner(Path(p).read_bytes(), str(p), device="cpu", lam_count=len(sn.lambdas))
                            for k, p in paths.items()})
            for batch in (int(b) for b in args.batches.split(",")):
                x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
                ref = runners["supernet"].infer(x)
                row = {"width": width, "batch": batch}
                for name, runner in runners.items():
                    out = runner.infer(x, li if name == "shared" else None)
                    assert np.abs(out - ref).max() < 1e-3, f"{name} does not compute the supernet's function"
                # Interleave rounds so drift in machine load hits every variant alike; report the median round.
                # The pause lets the previous runner's spinning worker threads (torch's OpenMP, ORT's pool) go
                # idle: on 2 cores they otherwise steal the CPU from whichever runner is timed next.
                rounds: dict[str, list[float]] = {k: [] for k in runners}
                for _ in range(5):
                    for name, runner in runners.items():
                        time.sleep(SETTLE_S)
                        stats = measure(runner, x, li if name == "shared" else None, warmup=5,
                                        min_runs=args.runs // 5, min_seconds=0.0)
                        rounds[name].append(stats["p50_ms"])
                row.update({f"{k}_p50_ms": statistics.median(v) for k, v in rounds.items()})
                row["folded_over_plain"] = row["folded_p50_ms"] / row["plain_p50_ms"]
                row["supernet_over_folded"] = row["supernet_p50_ms"] / row["folded_p50_ms"]
                row["shared_over_folded"] = row["shared_p50_ms"] / row["folded_p50_ms"]
                results.append(row)
                print(f"w={width:<5g} b={batch:<3d} supernet {row['supernet_p50_ms']:8.3f} ms  folded "
                      f"{row['folded_p50_ms']:7.3f}  shared {row['shared_p50_ms']:7.3f}  plain "
                      f"{row['plain_p50_ms']:7.3f} | folded/plain {row['folded_over_plain']:.3f}  supernet/folded "
                      f"{row['supernet_over_folded']:.2f}  shared/folded {row['shared_over_folded']:.2f}")
    report = {
        "command": "python benchmarks/latency.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                              vars(args).items() if k != "out" and v is not None),
        "machine": {"cpu": cpu_name(), "threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "arch": sn.arch, "input_shape": list(shape), "lambda": args.lam, "wall_s": round(time.time() - started, 1),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
