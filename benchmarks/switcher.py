"""What serving through the switcher costs per call, next to calling the runner directly, and what a switch costs.

ONNX Runtime on the CPU at batch 1. In each round, a block of direct `runner.infer(x)` calls and a block of
`sw(x)` calls on the same variant alternate; the per-call overhead is the median over rounds of
(switcher median − direct median). A switch is `sw.use(v)` between preloaded variants. Only the public API
(`Deployment.load`, `variants`, `runner`, `switcher`, `use`, `__call__`) is used, so the same script times
another checkout of oatdeploy for a before/after comparison (put that copy first on PYTHONPATH).

    python benchmarks/switcher.py [--deploy DIR] [--rounds 30] [--calls 300] [--out FILE.json]

Without --deploy it times a deployment made like the device tests make theirs (tests/runtime/deploykit.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def per_call_us(fn, x: np.ndarray, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--switches", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import onnxruntime

    import oatdeploy
    from oatdeploy.runtime import Deployment

    folder = args.deploy
    if folder is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime"))
        from deploykit import make_deployment

        folder = make_deployment(Path(tempfile.mkdtemp()) / "deploy")
    t_start = time.perf_counter()
    dep = Deployment.load(folder)
    variants = dep.variants
    x = dep.sample_input(1)
    sw = dep.switcher()
    sw.use(variants[0])
    runner = dep.runner(variants[0])
    for _ in range(200):  # warm-up both paths
        runner.infer(x, variants[0].lam_index)
        sw(x)
    direct, switched, overhead = [], [], []
    for _ in range(args.rounds):
        d = per_call_us(lambda a: runner.infer(a, variants[0].lam_index), x, args.calls)
        s = per_call_us(sw, x, args.calls)
        direct.append(d)
        switched.append(s)
        overhead.append(s - d)
    ids = [v.id for v in variants]
    switch_times = []
    for i in range(args.switches):
        t0 = time.perf_counter()
        sw.use(ids[i % len(ids)])
        switch_times.append(time.perf_counter() - t0)
    report = {
        "command": " ".join(sys.argv), "oatdeploy": str(Path(oatdeploy.__file__).parent),
        "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "rounds": args.rounds,
        "calls_per_round": args.calls, "direct_call_us_median": statistics.median(direct),
        "switcher_call_us_median": statistics.median(switched),
        "overhead_us_median": statistics.median(overhead), "overhead_us_min": min(overhead),
        "overhead_us_max": max(overhead), "switch_us_median": 1e6 * statistics.median(switch_times),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        from oatdeploy.runtime.atomic import atomic_write_json

        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
