"""Objectives, one module each, registered by name (`@register_objective("supervised")`).

Importing this package imports every module in it, so a new objective (a distillation term,
a self-supervised loss) is one module here; the tests parametrize over `list_objectives()`.
"""

import importlib
import pkgutil

from training.objectives.base import (
    OBJECTIVES,
    Loss,
    Objective,
    Step,
    build_objective,
    list_objectives,
    register_objective,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["OBJECTIVES", "Loss", "Objective", "Step", "build_objective", "list_objectives",
           "register_objective"]
