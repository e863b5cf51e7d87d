"""Fusion methods, one module each, registered by name (`@register_fusion("joint")`).

Importing this package imports every module in it, so a new method is one module here
plus one configs/fusion/<name>.yaml (docs/methods/fusion.md); no list to keep in sync.
"""

import importlib
import pkgutil

from models.fusion.base import FUSIONS, FusionModule, list_fusions, register_fusion

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FUSIONS", "FusionModule", "list_fusions", "register_fusion"]
