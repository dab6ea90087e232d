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
    atomic_save(path, lambda tmp: torch.save(payload, tmp))


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
    return payload


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
