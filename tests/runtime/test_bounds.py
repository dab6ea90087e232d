"""Reads that cannot hang or exhaust memory: only regular files, bounded by the sizes the manifest records, the
manifest itself capped, and batches refused before ONNX Runtime would try to allocate them (#21 item 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from oatdeploy.runtime import Deployment
from oatdeploy.runtime import folder as folder_io
from oatdeploy.runtime.backends import base
from oatdeploy.runtime.errors import ArtifactError, InputError
from oatdeploy.runtime.folder import load_manifest, read_manifest, read_verified
from tests.runtime.deploykit import oatdeploy


def fifo_at(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize(("rel", "command"), [("verify/clean.npz", "profile"), ("calib.npz", "quantize")])
def test_a_fifo_named_by_the_manifest_is_refused_not_read(folded: Path, rel: str, command: str) -> None:
    fifo_at(folded / rel)
    result = oatdeploy(command, str(folded))  # would block forever opening the FIFO for reading
    assert result.returncode == 2 and "not a regular file (a FIFO" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_fifo_as_the_manifest_is_refused(folded: Path) -> None:
    fifo_at(folded / "manifest.json")
    with pytest.raises(ArtifactError, match="not a regular file"):
        read_manifest(folded)


def test_a_file_of_another_size_is_refused_before_it_is_read(folded: Path) -> None:
    ref = read_manifest(folded).verification["clean"]
    assert ref.size == (folded / ref.path).stat().st_size  # export records each shared file's size
    with open(folded / ref.path, "r+b") as f:
        f.truncate(ref.size + (100 << 20))  # sparse: 100 MB more, never allocated here
    with pytest.raises(ArtifactError, match="bytes where the manifest records"):
        read_verified(folded, ref.path, ref.sha256, ref.size)
    with pytest.raises(ArtifactError, match="bytes where the manifest records"):
        load_manifest(folded)


def test_an_unsized_artifact_is_bounded(folded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    variant = read_manifest(folded).variants[0]
    monkeypatch.setattr(folder_io, "MAX_ARTIFACT_BYTES", 10)  # stands for 4 GB against a 40 GB sparse file
    with pytest.raises(ArtifactError, match="more than any artifact of a deployment"):
        read_verified(folded, variant.onnx, variant.sha256)
    with pytest.raises(ArtifactError, match="more than any artifact of a deployment"):
        load_manifest(folded)


def test_the_manifest_is_read_with_a_size_cap(folded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_io, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(ArtifactError, match="more than the 100 allowed"):
        read_manifest(folded)


@pytest.mark.parametrize(("text", "says"), [
    ('{"format": ' + "[" * 200_000 + "]" * 200_000 + "}", "nests its values too deep"),
    ('{"format": "oatdeploy-manifest", "version": ' + "9" * 5001 + "}", "not valid JSON"),
], ids=["200000-deep", "5001-digits"])  # short ids: pytest puts the id in the environment of subprocesses
def test_a_hostile_manifest_is_one_error(folded: Path, text: str, says: str) -> None:
    (folded / "manifest.json").write_text(text)
    with pytest.raises(ArtifactError, match=says):
        read_manifest(folded)
    result = oatdeploy("info", str(folded))
    assert result.returncode == 2 and says in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_batch_too_large_for_one_call_is_refused_before_onnx_runtime(folded: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    dep = Deployment.load(folded)
    runner = dep.runner(dep.variants_for()[0], device="cpu")
    sample = tuple(dep.input_shape)
    per = 4 * int(np.prod(sample))
    monkeypatch.setattr(base, "MAX_INPUT_BYTES", 100 * per)  # stands for 1 GiB
    assert runner.infer(np.zeros((100, *sample), np.float32)).shape[0] == 100
    with pytest.raises(InputError, match="use batches of at most 100"):
        runner.infer(np.zeros((101, *sample), np.float32))
    with pytest.raises(InputError, match="use batches of at most 100"):
        dep.profile(batches=(101,), min_runs=1, min_seconds=0.0, warmup=0, rounds=1)
    runner.close()
    result = oatdeploy("profile", str(folded), "--batch", "1000000000")
    assert result.returncode == 2 and "use batches of at most" in result.stderr


def test_the_recorded_size_is_part_of_the_contract(folded: Path) -> None:
    manifest = json.loads((folded / "manifest.json").read_text())
    assert isinstance(manifest["calibration"]["size"], int)
