"""OATS supernets and the plain networks they fold into."""

from oatdeploy.models import resnet, wrn  # noqa: F401  (registers the architectures)
from oatdeploy.models.base import FoldCtx, OATModel
from oatdeploy.models.registry import create_model, list_models

__all__ = ["FoldCtx", "OATModel", "create_model", "list_models"]
