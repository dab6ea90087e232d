"""Device side: load a deployment, profile it, select by budget, serve and switch; build engines, quantize and
check reduced precision on the device. Never imports torch; Python 3.8+."""

import sys

if __name__ != "oatdeploy.runtime":  # `import runtime` from a checkout's root would load every module twice
    raise ImportError(f"the device side is the package oatdeploy.runtime; import that, not {__name__}")
if getattr(sys.modules["oatdeploy"], "__file__", None) is None:  # the checkout, imported as a namespace package
    from oatdeploy.runtime.errors import checkout_as_namespace

    raise checkout_as_namespace(sys.modules["oatdeploy"])

from oatdeploy.runtime.deployment import Deployment
from oatdeploy.runtime.selection import Budget, NoFeasibleVariant, Variant, pareto_front, select
from oatdeploy.runtime.switcher import Switcher

__all__ = ["Budget", "Deployment", "NoFeasibleVariant", "Switcher", "Variant", "pareto_front", "select"]
