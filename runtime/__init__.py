"""Device side: load a deployment, profile it, select by budget, serve and switch; build engines, quantize and
check reduced precision on the device. Never imports torch; Python 3.8+."""

from oatdeploy.runtime.deployment import Deployment
from oatdeploy.runtime.selection import NoFeasibleVariant, Variant, pareto_front, select
from oatdeploy.runtime.switcher import Switcher

__all__ = ["Deployment", "NoFeasibleVariant", "Switcher", "Variant", "pareto_front", "select"]
