"""Objectives, one module each, registered by name (`@register_objective("supervised")`).

Importing this package imports every module in it, so a new objective (a distillation term,
a self-supervised loss) is one module here; the tests parametrize over `list_objectives()`.
"""

from models.registry import import_plugins
from training.objectives.base import (
    OBJECTIVES,
    Loss,
    Objective,
    Step,
    build_objective,
    list_objectives,
    register_objective,
)

import_plugins(__name__, __path__)

__all__ = ["OBJECTIVES", "Loss", "Objective", "Step", "build_objective", "list_objectives",
           "register_objective"]
