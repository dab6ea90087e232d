"""supernet.pt: model, λ encoding, resolved config and trainer state, saved atomically, loaded safely."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from oatdeploy.atomic import atomic_save
from oatdeploy.errors import ArtifactError
from oatdeploy.models import OATModel, create_model
from oatdeploy.supernet import Supernet

FORMAT, VERSION = "oatdeploy-supernet", 1


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
    """Load with `weights_only=True` and check the format; errors name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint not found: {path} (train one with `oatdeploy train --out RUN`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: report it as bad input, not a crash
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise ArtifactError(f"{path} is not a readable oatdeploy checkpoint ({type(e).__name__}: {reason}); "
                            "point to the supernet.pt that `oatdeploy train` wrote") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not an oatdeploy supernet checkpoint (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise ArtifactError(f"{path} has checkpoint version {payload.get('version')}; this oatdeploy reads "
                            f"version {VERSION}; upgrade oatdeploy")
    payload["config"] = json.loads(payload.pop("config_json"))
    return payload


def model_from_config(config: dict[str, Any]) -> OATModel:
    """The supernet a resolved config describes (checkpoints from before FiLM kinds existed used the MLP)."""
    return create_model(config["arch"], widths=config["widths"], num_classes=config["num_classes"],
                        in_channels=config["input_shape"][0], enc_dim=config["enc_dim"],
                        film=config.get("film", "mlp"))


def load_supernet(path: str | os.PathLike) -> Supernet:
    """The eval-mode supernet on CPU (DESIGN.md's `oatdeploy.load_checkpoint`)."""
    payload = read_checkpoint(path)
    model = model_from_config(payload["config"])
    model.load_state_dict(payload["model"])
    return Supernet(model, payload["config"], payload["encoding"])
