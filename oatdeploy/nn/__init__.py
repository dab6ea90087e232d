"""Layers of the OATS supernet: FiLM, dual BN, slimmable conv/linear, switchable dual BN."""

from oatdeploy.nn.dual_bn import DualBN2d, SwitchableDualBN2d, bn_affine, switchable_affine
from oatdeploy.nn.film import (
    FiLM,
    FiLMSpec,
    LambdaLinear,
    LinearFiLM,
    SwitchableFiLM,
    SwitchableLambdaLinear,
    film_affine,
)
from oatdeploy.nn.slimmable import SlimConv2d, SlimLinear, channels_for

__all__ = [
    "DualBN2d",
    "FiLM",
    "FiLMSpec",
    "LambdaLinear",
    "LinearFiLM",
    "SlimConv2d",
    "SlimLinear",
    "SwitchableDualBN2d",
    "SwitchableFiLM",
    "SwitchableLambdaLinear",
    "bn_affine",
    "channels_for",
    "film_affine",
    "switchable_affine",
]
