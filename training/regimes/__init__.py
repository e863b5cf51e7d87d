"""Training regimes, one module each, registered by name (`@register_regime("unimodal")`).

Importing this package imports every module in it, so a new regime is one module here plus
one configs/regime/<name>.yaml (docs/methods/regimes.md); the tests parametrize over
`list_regimes()`.
"""

from models.registry import import_plugins
from training.regimes.base import REGIMES, Regime, build_regime, list_regimes, register_regime

import_plugins(__name__, __path__)

__all__ = ["REGIMES", "Regime", "build_regime", "list_regimes", "register_regime"]
