"""Fusion methods, one module each, registered by name (`@register_fusion("joint")`).

Importing this package imports every module in it, so a new method is one module here
plus one configs/fusion/<name>.yaml (docs/methods/fusion.md); no list to keep in sync.
"""

from models.fusion.base import FUSIONS, FusionModule, list_fusions, register_fusion
from models.registry import import_plugins

import_plugins(__name__, __path__)

__all__ = ["FUSIONS", "FusionModule", "list_fusions", "register_fusion"]
