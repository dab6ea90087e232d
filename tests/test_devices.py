"""`--device`: one resolver for every command that attacks or evaluates, and a supernet that moves whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from oatdeploy.checkpoint import load_supernet
from oatdeploy.devices import eval_batch_size, resolve_device
from oatdeploy.runtime.errors import OatError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def test_resolve_device_takes_cpu_and_auto_and_names_the_choices() -> None:
    assert resolve_device("cpu") == resolve_device("cpu:0") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert eval_batch_size(torch.device("cpu")) == 256
    for bad in ("gpu", "tpu", "cuda:x", "mps"):
        with pytest.raises(OatError, match="--device must be auto, cpu, cuda or cuda:N"):
            resolve_device(bad)


@NO_CUDA
def test_cuda_without_a_gpu_is_refused_naming_the_fix() -> None:
    for name in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(OatError, match=f"--device {name}: this machine has no CUDA GPU.*use --device cpu"):
            resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_index_out_of_range_is_refused() -> None:
    n = torch.cuda.device_count()
    assert resolve_device(f"cuda:{n - 1}") == torch.device("cuda", n - 1)
    with pytest.raises(OatError, match=f"has {n} CUDA GPU"):
        resolve_device(f"cuda:{n}")


def test_supernet_to_moves_the_encoding_with_the_weights(tiny_ckpt: Path) -> None:
    sn = load_supernet(tiny_ckpt)
    assert sn.to("meta") is sn  # the meta device holds no data: every tensor must follow, nothing is computed
    assert sn.encoding.device.type == "meta" and sn.device.type == "meta"
    assert all(t.device.type == "meta" for t in [*sn.model.parameters(), *sn.model.buffers()])


def test_eval_on_the_cpu_device_gives_what_eval_gives_without_the_option(tiny_ckpt: Path, tmp_path: Path,
                                                                          cli) -> None:
    common = ["eval", str(tiny_ckpt), "--limit", "48", "--pgd-steps", "2"]
    plain = cli(*common, "--out", str(tmp_path / "plain.json"))
    on_cpu = cli(*common, "--out", str(tmp_path / "cpu.json"), "--device", "cpu", "--batch-size", "20")
    assert plain.returncode == 0 and on_cpu.returncode == 0, (plain.stderr, on_cpu.stderr)
    a, b = (json.loads((tmp_path / f).read_text())["results"] for f in ("plain.json", "cpu.json"))
    # The same images, the same PGD starts (drawn in image order, so the batch size does not matter): the same
    # outcome per image.
    assert [(r["clean_correct"], r["robust_correct"]) for r in a] == [(r["clean_correct"], r["robust_correct"])
                                                                      for r in b]


@NO_CUDA
@pytest.mark.parametrize("command", ["eval", "export", "demo"])
def test_device_cuda_on_a_machine_without_one_is_one_line_and_exit_2(command: str, tiny_ckpt: Path,
                                                                    tmp_path: Path, cli) -> None:
    args = {"eval": ["eval", str(tiny_ckpt), "--out", str(tmp_path / "e.json")],
            "export": ["export", str(tiny_ckpt), "--out", str(tmp_path / "deploy")],
            "demo": ["demo", "--out", str(tmp_path / "demo")]}[command]
    result = cli(*args, "--device", "cuda")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "use --device cpu" in result.stderr, result.stderr
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())  # nothing written
