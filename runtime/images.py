"""Image files as a deployment's input: PNG/JPEG read with Pillow, resized and scaled as the model expects.

Torch-free (the device runs it). Models take float32 [N, C, H, W] in [0, 1]: 8-bit pixels are divided
by 255, 16-bit grayscale by 65535; one channel means grayscale, three mean RGB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from oatdeploy.runtime.errors import OatError

SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_INPUT_PIXELS = 1 << 24  # 4096 × 4096: a model input larger than this is a damaged manifest, not a model


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the PNG/JPEG files directly inside them (sorted by name)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not found:
                raise OatError(f"{path} holds no PNG or JPEG files ({', '.join(SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise OatError(f"{path} does not exist; pass image files or folders of them")
    return files


def check_image_input(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of a model that takes images, or one OatError saying why this model's input is not an image."""
    if len(input_shape) != 3:
        raise OatError(f"the model takes input of shape {list(input_shape)}, not images [C, H, W]; feed it arrays "
                       "through oatdeploy.runtime.Deployment instead of image files")
    channels, height, width = (int(v) for v in input_shape)
    if height * width > MAX_INPUT_PIXELS:
        raise OatError(f"the model's input is {height} × {width} pixels, more than any image model takes "
                       f"({MAX_INPUT_PIXELS:,}); the manifest's input_shape is damaged: re-export the deployment")
    return channels, height, width


def load_image(source: str | Path | BinaryIO, input_shape: Sequence[int]) -> np.ndarray:
    """One image (a file, or its bytes in a file object) as float32 [C, H, W] in [0, 1] at the model's input shape."""
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise OatError("reading images needs Pillow: pip install 'oatdeploy[images]'") from None
    channels, height, width = check_image_input(input_shape)
    if channels not in (1, 3):
        raise OatError(f"the model takes {channels}-channel input; images can feed only 1 (grayscale) or 3 (RGB)")
    size: tuple[int, int] = (width, height)
    name = source if isinstance(source, (str, Path)) else getattr(source, "name", "the image")
    try:
        with Image.open(source) as opened:
            img = ImageOps.exif_transpose(opened)  # photos come rotated by their EXIF tag
            if img.mode.startswith("I;16"):  # 16-bit grayscale: Pillow's 8-bit conversion would clip it
                gray = Image.fromarray(np.asarray(img, dtype=np.float32) / 65535.0)
                pixels = np.asarray(gray.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
                return np.repeat(pixels[None], channels, axis=0)
            if img.mode in ("I", "F"):
                raise OatError(f"{name} holds 32-bit pixels (mode {img.mode}); save it as an 8-bit PNG or JPEG")
            img = img.convert("L" if channels == 1 else "RGB").resize(size, Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise OatError(f"cannot read {name} as an image ({type(e).__name__}); pass PNG or JPEG files") from None
    except Image.DecompressionBombError:
        raise OatError(f"{name} has more pixels than Pillow reads safely ({Image.MAX_IMAGE_PIXELS:,}), as a "
                       "decompression bomb would; resize it before predicting") from None
    return pixels[None] if channels == 1 else np.ascontiguousarray(pixels.transpose(2, 0, 1))
