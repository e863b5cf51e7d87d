"""Balancers, one module each, registered by name (`@register_balancer("miles")`).

Importing this package imports every module in it, so a new balancer is one module here
plus one configs/balancing/<name>.yaml (docs/methods/balancing.md); the tests parametrize
over `list_balancers()`.
"""

from models.registry import import_plugins
from training.balancers.base import (
    BALANCERS,
    GROUPS,
    Balancer,
    build_balancer,
    list_balancers,
    register_balancer,
)

import_plugins(__name__, __path__)

__all__ = ["BALANCERS", "GROUPS", "Balancer", "build_balancer", "list_balancers", "register_balancer"]
