"""Balancers, one module each, registered by name (`@register_balancer("miles")`).

Importing this package imports every module in it, so a new balancer is one module here
plus one configs/balancing/<name>.yaml (docs/methods/balancing.md); the tests parametrize
over `list_balancers()`.
"""

import importlib
import pkgutil

from training.balancers.base import (
    BALANCERS,
    GROUPS,
    Balancer,
    build_balancer,
    list_balancers,
    register_balancer,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BALANCERS", "GROUPS", "Balancer", "build_balancer", "list_balancers", "register_balancer"]
