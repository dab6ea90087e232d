"""supernet.pt: model, λ encoding, resolved config and trainer state, saved atomically, loaded safely."""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from oatdeploy.config import LEGACY
from oatdeploy.models import OATModel, create_model
from oatdeploy.runtime.atomic import atomic_save
from oatdeploy.runtime.checks import check_header
from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.supernet import Supernet

FORMAT, VERSION = "oatdeploy-supernet", 1
CONFIG_KEYS = ("arch", "widths", "num_classes", "input_shape", "enc_dim", "lambdas")


def save_checkpoint(path: str | os.PathLike, model: OATModel, config: dict[str, Any], encoding: torch.Tensor,
                    trainer_state: dict[str, Any] | None = None) -> None:
    """Write then rename: an interrupted save never replaces a good checkpoint."""
    model = getattr(model, "module", model)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config_json": json.dumps(config),
        "encoding": encoding.detach().cpu(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "trainer": trainer_state or {},
    }
    try:
        atomic_save(path, lambda tmp: torch.save(payload, tmp))
    except RuntimeError as e:  # torch's inline_container reports a failed write (a full disk) as RuntimeError
        raise ArtifactError(f"could not write {path} ({str(e).splitlines()[0][:200]}): is the disk full? Free some "
                            "space and run again; the previous checkpoint is untouched") from None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load with `weights_only=True` and check the format; errors name the file and the fix in one line."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint not found: {path} (train one with `oatdeploy train --out RUN`)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files: the error says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: report it as bad input, not a crash
        raise ArtifactError(f"{path} is not a readable oatdeploy checkpoint: {unreadable_reason(path, e)}; "
                            f"point to the supernet.pt that `oatdeploy train` wrote, or copy it again") from None
    check_header(payload, path, "supernet checkpoint", FORMAT, VERSION, "upgrade oatdeploy")
    try:
        payload["config"] = json.loads(payload.pop("config_json"))
        missing = [k for k in ("model", "encoding") if k not in payload]
        missing += [k for k in CONFIG_KEYS if k not in payload["config"]]
    except (KeyError, TypeError, ValueError):
        missing = ["config_json"]
    if missing:
        raise ArtifactError(f"{path} is an incomplete oatdeploy checkpoint (missing {', '.join(missing)}); "
                            "point to the supernet.pt that `oatdeploy train` wrote, or copy it again")
    flaw = payload_flaw(payload)
    if flaw:
        raise ArtifactError(f"{path} is not a checkpoint `oatdeploy train` wrote: {flaw}; point to the supernet.pt "
                            "that `oatdeploy train` wrote, or copy it again")
    return payload


def _numbers(value: Any, low: float, high: float) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high for v in value)


def _count(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def payload_flaw(payload: dict[str, Any]) -> str | None:
    """What in a checkpoint's config or tensors cannot build a supernet (checked before anything is built)."""
    config, model, encoding = payload["config"], payload["model"], payload["encoding"]
    if not isinstance(config, dict):
        return "its config is not an object"
    checks = {
        "arch": isinstance(config["arch"], str),
        "widths": _numbers(config["widths"], 1e-6, 1.0),
        "lambdas": _numbers(config["lambdas"], 0.0, 1.0),
        "num_classes": _count(config["num_classes"], 2),
        "input_shape": isinstance(config["input_shape"], list) and len(config["input_shape"]) == 3
        and all(_count(v, 1) for v in config["input_shape"]),
        "enc_dim": _count(config["enc_dim"], 1),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        return f"config {', '.join(f'{k}={config[k]!r}'[:80] for k in bad)} (widths in (0, 1], lambdas in [0, 1], " \
               "num_classes >= 2, input_shape [C, H, W])"
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        return f"its model is a {type(model).__name__}, not a dict of named tensors"
    want = (len(config["lambdas"]), config["enc_dim"])
    if not isinstance(encoding, torch.Tensor) or tuple(encoding.shape) != want:
        shape = tuple(encoding.shape) if isinstance(encoding, torch.Tensor) else type(encoding).__name__
        return f"its λ encoding is {shape}, not {want} (one row of enc_dim per λ)"
    return None


def unreadable_reason(path: Path, error: Exception) -> str:
    """Why torch.load failed, in words (its own messages run for paragraphs and advise unsafe loading)."""
    if path.stat().st_size == 0:
        return "the file is empty"
    if not zipfile.is_zipfile(path):
        return "it is not a PyTorch zip archive (a truncated copy, or another kind of file)"
    if isinstance(error, pickle.UnpicklingError):
        return "it holds Python objects other than tensors, so oatdeploy did not write it and will not unpickle it"
    return f"its archive is damaged ({type(error).__name__})"


def model_from_config(config: dict[str, Any]) -> OATModel:
    """The supernet a resolved config describes (a field the checkpoint predates takes its LEGACY value)."""
    return create_model(config["arch"], widths=config["widths"], num_classes=config["num_classes"],
                        in_channels=config["input_shape"][0], enc_dim=config["enc_dim"],
                        film=config.get("film", LEGACY["film"]),
                        lambda_head=config.get("lambda_head", LEGACY["lambda_head"]))


def load_supernet(path: str | os.PathLike) -> Supernet:
    """The eval-mode supernet on CPU (`oatdeploy.load_checkpoint`)."""
    payload = read_checkpoint(path)
    model = model_from_config(payload["config"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError:  # torch lists every mismatched tensor, one per line
        raise ArtifactError(f"{path}: its weights do not fit the {payload['config']['arch']} its config describes "
                            "(a damaged or hand-edited checkpoint); point to the supernet.pt that `oatdeploy train` "
                            "wrote") from None
    return Supernet(model, payload["config"], payload["encoding"])
