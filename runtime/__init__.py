"""Device side: load a deployment, profile it, select by budget, serve and switch; build engines, quantize and
check reduced precision on the device. Never imports torch; Python 3.8+."""

if __name__ != "oatdeploy.runtime":  # `import runtime` from a checkout's root would load every module twice
    raise ImportError(f"the device side is the package oatdeploy.runtime; import that, not {__name__}")

from oatdeploy.runtime.deployment import Deployment
from oatdeploy.runtime.selection import Budget, NoFeasibleVariant, Variant, pareto_front, select
from oatdeploy.runtime.switcher import Switcher

__all__ = ["Budget", "Deployment", "NoFeasibleVariant", "Switcher", "Variant", "pareto_front", "select"]
