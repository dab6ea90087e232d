"""`oatdeploy predict`: real PNG/JPEG files written here, labelled through the switcher as the runtime would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from oatdeploy.runtime.images import load_image
from oatdeploy.runtime.labels import FASHION_MNIST


def saved_images(deploy: Path, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    with np.load(deploy / "verify" / "clean.npz") as npz:
        return npz["x"][:n], npz["y"][:n]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[1, H, W] in [0, 1] -> H×W uint8 (Fashion-MNIST pixels are k/255, so this is exact)."""
    return np.round(img[0] * 255).astype(np.uint8)


def reference_logits(deploy: Path, variant_id: str, x: np.ndarray) -> np.ndarray:
    """The variant's ONNX under plain ONNX Runtime, on the array the PNGs were written from."""
    manifest = json.loads((deploy / "manifest.json").read_text())
    onnx = next(v["onnx"] for v in manifest["variants"] if v["id"] == variant_id)
    session = ort.InferenceSession(str(deploy / onnx), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def test_png_files_are_labelled_as_the_model_labels_their_pixels(cli, profiled_deploy: Path, tmp_path: Path) -> None:
    x, _ = saved_images(profiled_deploy)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(x):
        Image.fromarray(to_uint8(img)).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image: a folder's other files are skipped")
    result = cli("predict", str(profiled_deploy), str(folder), "--format", "json")
    assert result.returncode == 0, result.stderr
    preds = json.loads(result.stdout)["predictions"]
    assert [p["file"] for p in preds] == [str(folder / f"img{i}.png") for i in range(len(x))]
    logits = reference_logits(profiled_deploy, preds[0]["variant"], x)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert [p["label"] for p in preds] == logits.argmax(1).tolist()
    assert [p["class"] for p in preds] == [FASHION_MNIST[k] for k in logits.argmax(1)]
    np.testing.assert_allclose([p["probability"] for p in preds], probs.max(1), atol=1e-5)

    text = cli("predict", str(profiled_deploy), *[str(folder / f"img{i}.png") for i in range(2)])
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert lines[0].startswith(f"served by {preds[0]['variant']} (SA ") and len(lines) == 4
    assert lines[1].split() == ["file", "class", "(label)", "probability"]  # each column named
    assert lines[2].startswith(str(folder / "img0.png")) and f"{preds[0]['class']} ({preds[0]['label']})" in lines[2]
    assert lines[2].index(f"{preds[0]['probability']:.3f}") == lines[1].index("probability")


def test_an_unreadable_image_in_a_folder_is_reported_and_skipped(cli, profiled_deploy: Path, tmp_path: Path) -> None:
    x, _ = saved_images(profiled_deploy, 2)
    for i, img in enumerate(x):
        Image.fromarray(to_uint8(img)).save(tmp_path / f"img{i}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG cut short")
    result = cli("predict", str(profiled_deploy), str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert [p["file"] for p in json.loads(result.stdout)["predictions"]] == [str(tmp_path / f"img{i}.png")
                                                                             for i in range(2)]
    assert json.loads(result.stdout)["skipped"][0]["file"] == str(tmp_path / "broken.png")
    assert result.stderr.strip() == f"warning: skipped: cannot read {tmp_path / 'broken.png'} as an image " \
                                    "(UnidentifiedImageError); pass PNG or JPEG files"


def test_the_budget_picks_the_variant_that_serves(cli, profiled_deploy: Path, tmp_path: Path) -> None:
    from oatdeploy.runtime import Deployment

    x, _ = saved_images(profiled_deploy, 1)
    Image.fromarray(to_uint8(x[0])).save(tmp_path / "a.png")
    dep = Deployment.load(profiled_deploy)
    most_robust = max(v.robust_acc for v in dep.variants)
    fastest = min(v.latency_ms for v in dep.variants)
    for budget in (["--min-robust-acc", str(most_robust)], ["--max-latency-ms", str(fastest * 1.0001)],
                   ["--min-robust-acc", "0", "--objective", "robust"]):
        result = cli("predict", str(profiled_deploy), str(tmp_path / "a.png"), *budget, "--format", "json")
        assert result.returncode == 0, result.stderr
        kwargs = {k.lstrip("-").replace("-", "_"): (float(v) if k != "--objective" else v)
                  for k, v in zip(budget[::2], budget[1::2], strict=True)}
        assert json.loads(result.stdout)["predictions"][0]["variant"] == dep.select(**kwargs).id

    result = cli("predict", str(profiled_deploy), str(tmp_path / "a.png"), "--min-robust-acc", "1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no variant meets the budget" in result.stderr


def test_jpeg_rgb_and_any_size_are_converted_to_the_models_input(tmp_path: Path) -> None:
    i, j = np.mgrid[0:28, 0:28]
    x = (np.sin(i / 5.0) * np.cos(j / 7.0) * 0.5 + 0.5)[None].astype(np.float32)  # a smooth 28×28 picture
    smooth = np.kron(to_uint8(x), np.ones((4, 4), np.uint8))  # 112×112, each pixel a 4×4 block
    Image.fromarray(smooth).convert("RGB").save(tmp_path / "big.jpg", quality=95)
    got = load_image(tmp_path / "big.jpg", (1, 28, 28))
    assert got.shape == (1, 28, 28) and got.dtype == np.float32
    assert np.abs(got - x).mean() < 0.03  # downscaled back, up to JPEG's loss

    Image.fromarray(to_uint8(x)).save(tmp_path / "gray.png")
    rgb = load_image(tmp_path / "gray.png", (3, 28, 28))  # a grayscale file for an RGB model
    assert rgb.shape == (3, 28, 28) and np.array_equal(rgb[0], rgb[2])
    np.testing.assert_allclose(rgb[1], to_uint8(x) / 255.0, atol=1e-7)

    rgba = np.dstack([np.full((8, 8), 255, np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8),
                      np.full((8, 8), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "red.png")
    red = load_image(tmp_path / "red.png", (3, 8, 8))
    assert np.allclose(red[0], 1.0) and np.allclose(red[1:], 0.0)  # alpha dropped, uint8 scaled to [0, 1]

    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # 16-bit grayscale: scaled by 65535, not clipped at 255
    np.testing.assert_allclose(load_image(tmp_path / "deep.png", (1, 8, 8))[0], deep / 65535.0, atol=1e-6)


@pytest.mark.parametrize(("target", "needle"), [
    ("missing.png", "does not exist"),
    ("empty", "holds no PNG or JPEG files"),
    ("notes.png", "cannot read"),
])
def test_bad_image_paths_are_one_line(cli, profiled_deploy: Path, tmp_path: Path, target: str, needle: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.png").write_text("text with a .png name")
    result = cli("predict", str(profiled_deploy), str(tmp_path / target))
    assert result.returncode == 2 and result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1 and needle in result.stderr and str(tmp_path / target) in result.stderr


def test_device_side_commands_run_without_torch(profiled_deploy: Path, tmp_path: Path) -> None:
    x, _ = saved_images(profiled_deploy, 1)
    Image.fromarray(to_uint8(x[0])).save(tmp_path / "a.png")
    code = ("import sys; sys.modules['torch'] = None  # any import of torch now fails\n"
            "from oatdeploy.cli import main; main(sys.argv[1:])")
    for args in (["info", str(profiled_deploy)], ["predict", str(profiled_deploy), str(tmp_path / "a.png")]):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
