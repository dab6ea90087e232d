"""Device side: load a deployment, profile it, select by budget, serve and switch. Never imports torch."""

from oatdeploy.runtime.deployment import Deployment
from oatdeploy.runtime.select import NoFeasibleVariant, Variant, pareto_front, select
from oatdeploy.runtime.switcher import Switcher

__all__ = ["Deployment", "NoFeasibleVariant", "Switcher", "Variant", "pareto_front", "select"]
