"""The GPU check: what a GPU user runs, on one GPU, in at most 9 minutes, with no network and nothing installed.

    python benchmarks/gpu_check.py --reference-dir /tmp/oat_ref     # on a machine with one CUDA GPU
    python benchmarks/gpu_check.py --smoke --results /tmp/x         # the same code on the CPU, tiny (CI runs it)

In order, each step a subprocess with its own time limit inside a 9-minute budget:
  1. tests      tests/test_cuda.py: the step (eager and captured), the supernet, eval and export, CPU vs CUDA;
  2. step       benchmarks/train_step.py at the paper's setting (ResNet-34, batch 128, PGD-7, 3×32×32): the
                paper's code (with --reference-dir) against ours as `train` runs it, in fp32, and captured as a
                CUDA graph (`--cuda-graphs`), weighted and sampled;
  3. study      the `gpu-quick` preset of study_oat_vs_dedicated.py: full Fashion-MNIST, full-width ResNet-20,
                2 epochs, PGD-7; OAT and dedicated λ = 0, 0.1, 1 trained at once (--concurrent 4);
  4. eval       `oatdeploy eval` of the study's CUDA-trained OAT checkpoint on the GPU, and on the CPU for the
                first images, compared image by image;
  5. export     `oatdeploy export --device cuda` of that checkpoint: its verification attack on the GPU, every
                graph checked under ONNX Runtime (parity);
  6. nccl       a one-rank torchrun: an NCCL process group, an all-reduce and two DistributedDataParallel steps.
It writes benchmarks/results/gpu_check_<gpu>.{json,md} (--results to put them elsewhere) and exits 1 when a step
failed. --smoke runs every step on the CPU at tiny sizes (fmnist-mini, ResNet-20, a step or two each; the CUDA
tests skip), so that CI keeps this script from rotting; it says nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 540.0
SIZES: dict[str, dict[str, Any]] = {
    "gpu": {"device": "cuda", "preset": "gpu-quick", "concurrent": 4, "eval_limit": 1000, "cpu_eval_limit": 200,
            "eval_pgd": 20, "verify": 256,
            "step": ["--arch", "resnet34", "--batch-size", "128", "--pgd-steps", "7", "--steps", "5", "--rounds", "3",
                     "--warmup", "2"],
            "variants": ["ours", "fp32", "graphs", "graphs-fp32", "sampled", "graphs-sampled"],
            "budget_s": BUDGET_S,
            "limits": {"tests": 120, "step": 150, "study": 270, "eval": 90, "export": 60, "nccl": 60}},
    "smoke": {"device": "cpu", "preset": "quick-smoke", "concurrent": 2, "eval_limit": 24, "cpu_eval_limit": 12,
              "eval_pgd": 2, "verify": 16,
              "step": ["--arch", "resnet20", "--batch-size", "8", "--pgd-steps", "1", "--steps", "1", "--rounds", "1",
                       "--warmup", "0"],
              "variants": ["ours", "graphs"],
              # A CPU shared with other work (CI) may take several times its unloaded minute or two.
              "budget_s": 1200, "limits": {"tests": 120, "step": 200, "study": 400, "eval": 200, "export": 200,
                                           "nccl": 120}},
}


class Check:
    """Runs the steps in order within the budget and records each: ok, seconds, what it found, or its error."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s
        self.steps: list[dict[str, Any]] = []

    def run(self, name: str, limit_s: float, fn: Callable[[float], dict[str, Any]]) -> dict[str, Any] | None:
        left = self.deadline - time.monotonic()
        record: dict[str, Any] = {"name": name}
        t0 = time.monotonic()
        if left < 10:
            record.update(ok=False, error="skipped: the time budget is spent")
        else:
            try:
                record.update(ok=True, found=fn(min(limit_s, left)))
            except Exception as e:  # each step reports its own failure; the others still run
                record.update(ok=False, error=str(e)[-2000:])
        record["seconds"] = round(time.monotonic() - t0, 1)
        self.steps.append(record)
        print(f"[gpu_check] {name}: {'ok' if record['ok'] else 'FAILED'} in {record['seconds']} s", flush=True)
        return record.get("found")


def sh(args: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command from the repository root; its output, or an error with its last lines."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    try:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{' '.join(args[:6])} ...` ran past its {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"`{' '.join(args[:6])} ...` exited {done.returncode}:\n{tail}")
    return done.stdout


def oatdeploy(*args: str, timeout: float) -> str:
    return sh([sys.executable, "-m", "oatdeploy.cli", *args], timeout)


def tests(timeout: float) -> dict[str, Any]:
    out = sh([sys.executable, "-m", "pytest", "tests/test_cuda.py", "-q", "-o", "addopts=", "-p", "no:cacheprovider"],
             timeout)
    return {"summary": out.strip().splitlines()[-1]}


def train_step(size: dict[str, Any], work: Path, reference_dir: Path | None, timeout: float) -> dict[str, Any]:
    variants = (["reference"] if reference_dir else []) + size["variants"]
    out = work / "train_step.json"
    sh([sys.executable, "benchmarks/train_step.py", "--reference-dir", str(reference_dir or work), "--variants",
        ",".join(variants), "--device", size["device"], "--out", str(out), *size["step"]], timeout)
    report = json.loads(out.read_text())
    return {"config": report["config"], "reference": str(reference_dir) if reference_dir else None,
            "variants": {n: {"what": v["what"], "median_s": v["median_s"], "over_reference": v["over_reference"]}
                         for n, v in report["variants"].items()}}


def study(size: dict[str, Any], work: Path, data_dir: str | None, timeout: float) -> dict[str, Any]:
    args = [sys.executable, "benchmarks/study_oat_vs_dedicated.py", "--preset", size["preset"], "--device",
            size["device"], "--concurrent", str(size["concurrent"]), "--runs", str(work / "runs"), "--results",
            str(work / "results")]
    sh(args + (["--data-dir", data_dir] if data_dir else []), timeout)
    report = json.loads((work / "results" / f"oat_vs_dedicated_{size['preset']}.json").read_text())
    runs = {r["name"]: r["wall_s"] for r in report["runs"]}
    return {"preset": size["preset"], "wall_s": report["meta"]["this_invocation_s"], "runs_wall_s": runs,
            "by_lambda": [{"lambda": r["lambda"], "oat": {"sa": r["oat"]["sa"], "ra": r["oat"]["ra"]},
                           "dedicated": {"sa": r["dedicated"]["sa"], "ra": r["dedicated"]["ra"]}}
                          for r in report["summary"]["by_lambda"]]}


def evaluate(size: dict[str, Any], ckpt: Path, work: Path, timeout: float) -> dict[str, Any]:
    """SA/RA on the GPU, then the first images again on the CPU: the same PGD starts (drawn in image order),
    so each image's outcome can be compared."""
    from oatdeploy.evaluate import unpack_mask

    common = ["eval", str(ckpt), "--pgd-steps", str(size["eval_pgd"]), "--force"]
    t0 = time.monotonic()
    oatdeploy(*common, "--device", size["device"], "--limit", str(size["eval_limit"]), "--out",
              str(work / "eval.json"), timeout=timeout)
    on_device_s = time.monotonic() - t0
    oatdeploy(*common, "--device", "cpu", "--limit", str(size["cpu_eval_limit"]), "--out",
              str(work / "eval-cpu.json"), timeout=max(timeout - on_device_s, 1))
    dev, cpu = (json.loads((work / name).read_text())["results"] for name in ("eval.json", "eval-cpu.json"))
    n = size["cpu_eval_limit"]
    differ = {kind: max(int((unpack_mask(a[f"{kind}_correct"], a["n"])[:n] != unpack_mask(b[f"{kind}_correct"], n)
                             ).sum()) for a, b in zip(dev, cpu, strict=True)) for kind in ("clean", "robust")}
    return {"images": size["eval_limit"], "device_s": round(on_device_s, 1),
            "variants": [{"lambda": r["lambda"], "width": r["width"], "sa": r["clean_acc"], "ra": r["robust_acc"]}
                         for r in dev],
            "cpu_check": {"images": n, "most_differing_images_sa": differ["clean"],
                          "most_differing_images_ra": differ["robust"]}}


def export(size: dict[str, Any], ckpt: Path, work: Path, timeout: float) -> dict[str, Any]:
    from oatdeploy.runtime.folder import read_manifest

    oatdeploy("export", str(ckpt), "--out", str(work / "deploy"), "--device", size["device"], "--eval-json",
              str(work / "eval.json"), "--verify-samples", str(size["verify"]), "--calib-samples", "64", "--quiet",
              "--force", timeout=timeout)
    variants = read_manifest(work / "deploy").variants
    checks = [v.verification for v in variants if v.verification is not None]
    diffs = [c.max_abs_diff for c in checks if c.max_abs_diff is not None]
    return {"variants": len(variants), "max_abs_logit_diff_onnxruntime": max(diffs) if diffs else None}


def nccl(size: dict[str, Any], timeout: float) -> dict[str, Any]:
    out = sh([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", __file__,
              "--nccl-worker", "--device", size["device"]], timeout)
    return json.loads(out.strip().splitlines()[-1])


def nccl_worker(device_name: str) -> None:
    """Under torchrun: a process group (NCCL on CUDA, gloo on the CPU), an all-reduce, and two training steps
    through DistributedDataParallel, as `train` takes them under torchrun with more ranks."""
    import torch
    import torch.distributed as dist

    from oatdeploy.config import TrainConfig
    from oatdeploy.data import load_dataset
    from oatdeploy.devices import resolve_device
    from oatdeploy.lambdas import build_table
    from oatdeploy.models import create_model
    from oatdeploy.trainer import OATStep, make_optimizer

    device = resolve_device(device_name)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    try:
        ones = torch.ones(4, device=device)
        dist.all_reduce(ones)
        cfg = TrainConfig(dataset="fmnist-mini", lambdas=[0.0, 0.4, 1.0], batch_size=32, pgd_steps=2, eps=0.1,
                          num_classes=10, input_shape=[1, 28, 28], out="", amp=False)
        model = create_model("resnet20", widths=cfg.widths, num_classes=10, in_channels=1).train().to(device)
        step = OATStep(model, cfg, build_table("rand", cfg.lambdas), device, seed=0, ddp=True)
        opt, _ = make_optimizer(model, cfg, total_steps=2)
        data = load_dataset("fmnist-mini", limit=32)
        losses = []
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            losses.append(float(step(data.x, data.y)["loss"]))
            opt.step()
        print(json.dumps({"backend": backend, "world_size": dist.get_world_size(),
                          "all_reduce": ones.tolist(), "losses": losses}))
    finally:
        dist.destroy_process_group()


def gpu_label(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else "CPU smoke run"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU check: {report['gpu']}", "", f"Command: `{report['command']}`  ",
             f"Versions: {report['versions']}  ",
             f"Total: {report['wall_s']:.0f} s (budget {report['budget_s']:.0f} s)", "",
             "| step | result | seconds |", "|---|---|---|"]
    for s in report["steps"]:
        result = "ok" if s["ok"] else "FAILED: " + s["error"].splitlines()[0][:160]
        lines.append(f"| {s['name']} | {result} | {s['seconds']} |")
    found = {s["name"]: s.get("found") for s in report["steps"]}
    if found.get("step"):
        cfg = found["step"]["config"]
        lines += ["", f"Training step, {cfg['arch']}, batch {cfg['batch_size']}, PGD-{cfg['pgd_steps']}, "
                  f"{'×'.join(map(str, cfg['input_shape']))} on {cfg['device']} (medians):", "",
                  "| variant | s/step | ratio to the paper's code |", "|---|---|---|"]
        for name, v in found["step"]["variants"].items():
            ratio = "-" if v["over_reference"] is None else f"{v['over_reference']:.3f}"
            lines.append(f"| {name} ({v['what']}) | {v['median_s']:.4f} | {ratio} |")
    if found.get("study"):
        st = found["study"]
        lines += ["", f"Study `{st['preset']}` in {st['wall_s']:.0f} s (runs trained at once):", "",
                  "| λ | OAT SA | OAT RA | dedicated SA | dedicated RA |", "|---|---|---|---|---|"]

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        for r in st["by_lambda"]:
            lines.append(f"| {r['lambda']:g} | {f(r['oat']['sa'])} | {f(r['oat']['ra'])} | {f(r['dedicated']['sa'])} "
                         f"| {f(r['dedicated']['ra'])} |")
    if found.get("eval"):
        ev, cc = found["eval"], found["eval"]["cpu_check"]
        lines += ["", f"Eval of the study's OAT checkpoint on {ev['images']} images: {ev['device_s']} s; the "
                  f"first {cc['images']} again on the CPU: at most {cc['most_differing_images_sa']} image(s) differ "
                  f"in SA and {cc['most_differing_images_ra']} in RA per variant."]
    if found.get("export"):
        ex = found["export"]
        lines += ["", f"Export: {ex['variants']} variants, max |Δlogit| under ONNX Runtime "
                  f"{ex['max_abs_logit_diff_onnxruntime']:.2e}."]
    if found.get("nccl"):
        lines += ["", f"torchrun, one rank: {found['nccl']['backend']}, losses {found['nccl']['losses']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="Every step on the CPU at tiny sizes (CI).")
    parser.add_argument("--reference-dir", type=Path, default=None,
                        help="The paper's code (VITA-Group/Once-for-All-Adversarial-Training), for the step ratio.")
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's path).")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temporary one).")
    parser.add_argument("--nccl-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.nccl_worker:
        nccl_worker(args.device)
        return
    import torch

    size = SIZES["smoke" if args.smoke else "gpu"]
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_check: torch sees no CUDA GPU here; run it on a GPU machine, or use --smoke on a CPU")
    if args.reference_dir and not (args.reference_dir / "attacks" / "pgd.py").is_file():
        sys.exit(f"gpu_check: {args.reference_dir} is not the paper's code (no attacks/pgd.py); drop --reference-dir")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    started = time.monotonic()
    check = Check(size["budget_s"])
    lim = size["limits"]
    check.run("tests", lim["tests"], tests)
    check.run("step", lim["step"], lambda t: train_step(size, work, args.reference_dir, t))
    check.run("study", lim["study"], lambda t: study(size, work, args.data_dir, t))
    ckpt = work / "runs" / size["preset"] / "oat-s0" / "supernet.pt"
    check.run("eval", lim["eval"], lambda t: evaluate(size, ckpt, work, t))
    check.run("export", lim["export"], lambda t: export(size, ckpt, work, t))
    check.run("nccl", lim["nccl"], lambda t: nccl(size, t))
    gpu = gpu_label(size["device"])
    report = {"gpu": gpu, "smoke": args.smoke, "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:]),
              "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
                          f"CUDA {torch.version.cuda}", "wall_s": round(time.monotonic() - started, 1),
              "budget_s": size["budget_s"], "steps": check.steps}
    from oatdeploy.runtime.atomic import atomic_write_bytes, atomic_write_json

    stem = args.results / ("gpu_check_" + re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-"))
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stem.with_suffix(".json"), report)
    atomic_write_bytes(stem.with_suffix(".md"), markdown(report).encode())
    print(markdown(report))
    print(f"wrote {stem}.json and {stem}.md")
    sys.exit(0 if all(s["ok"] for s in check.steps) else 1)


if __name__ == "__main__":
    main()
