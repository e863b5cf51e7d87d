"""`none`: multi-head joint training with fixed loss weights, the baseline every balancer must beat."""

from training.balancers.base import Balancer, register_balancer


@register_balancer("none")
class NoBalancing(Balancer):
    """The base class's behaviour: sum of weighted head losses, the global rate everywhere."""
