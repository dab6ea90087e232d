"""Model registry (timm-style): `create_model(name, widths=..., num_classes=..., in_channels=...)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from oatdeploy.config import TrainConfig
from oatdeploy.runtime.errors import OatError

if TYPE_CHECKING:
    from oatdeploy.models.base import OATModel

_MODELS: dict[str, Callable[..., OATModel]] = {}


def register(name: str) -> Callable[[Callable[..., OATModel]], Callable[..., OATModel]]:
    def deco(fn: Callable[..., OATModel]) -> Callable[..., OATModel]:
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, widths: Sequence[float] = (1.0,), num_classes: int = 10, in_channels: int = 3,
                 enc_dim: int = TrainConfig.enc_dim, film: str = TrainConfig.film,
                 lambda_head: bool = TrainConfig.lambda_head) -> OATModel:
    """Build a supernet by name, with training's defaults; widths are fractions of the full channel counts,
    largest last; `film` is the FiLM kind (config.FILM_KINDS); `lambda_head` conditions the classifier on λ too."""
    from oatdeploy.nn import FiLMSpec

    if name not in _MODELS:
        raise OatError(f"unknown architecture {name!r}; choose one of: {', '.join(list_models())}")
    try:
        spec = FiLMSpec(enc_dim, film, lambda_head)
    except ValueError as e:
        raise OatError(str(e)) from None
    return _MODELS[name](widths=list(widths), num_classes=num_classes, in_channels=in_channels, film=spec)
