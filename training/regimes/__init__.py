"""Training regimes, one module each, registered by name (`@register_regime("unimodal")`).

Importing this package imports every module in it, so a new regime is one module here plus
one configs/regime/<name>.yaml (docs/methods/regimes.md); the tests parametrize over
`list_regimes()`.
"""

import importlib
import pkgutil

from training.regimes.base import REGIMES, Regime, build_regime, list_regimes, register_regime

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["REGIMES", "Regime", "build_regime", "list_regimes", "register_regime"]
