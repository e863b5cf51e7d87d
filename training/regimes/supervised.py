"""`supervised` (the default): the multi-head fusion model, masked 3-head loss, any balancer (MILES)."""

from training.regimes.base import Regime, register_regime


@register_regime("supervised")
class Supervised(Regime):
    """The base class's behaviour: nothing to change."""
