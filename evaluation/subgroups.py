"""Subgroup definitions: which level of sex, age band and image availability a stay is in.

Registered by name so a new subgroup (e.g. care unit) is one function; each returns one
level name per stay (None where unknown, and those stays are left out of that table).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

SubgroupRule = Callable[[pd.DataFrame, list[float]], pd.Series]
SUBGROUPS: dict[str, SubgroupRule] = {}
SUBGROUP_TITLES = {"sex": "Sex", "age": "Age band (years)", "image": "Chest X-ray"}


def register_subgroup(name: str) -> Callable[[SubgroupRule], SubgroupRule]:
    def add(rule: SubgroupRule) -> SubgroupRule:
        SUBGROUPS[name] = rule
        return rule
    return add


def age_band_names(edges: list[float]) -> list[str]:
    """[18, 40, 65, 80] -> <18, 18-39, 40-64, 65-79, 80+ (ages in whole years)."""
    edges = [int(e) for e in edges]
    names = [f"<{edges[0]}"]
    names += [f"{low}-{high - 1}" for low, high in zip(edges[:-1], edges[1:], strict=False)]
    return names + [f"{edges[-1]}+"]


@register_subgroup("sex")
def sex_level(stays: pd.DataFrame, age_bands: list[float]) -> pd.Series:
    if "sex" not in stays:
        return pd.Series([None] * len(stays), index=stays.index, dtype=object)
    names = {"F": "Female", "M": "Male"}
    return stays["sex"].map(lambda v: names.get(v) if isinstance(v, str) else None).astype(object)


@register_subgroup("age")
def age_level(stays: pd.DataFrame, age_bands: list[float]) -> pd.Series:
    if "age" not in stays:
        return pd.Series([None] * len(stays), index=stays.index, dtype=object)
    names = age_band_names(age_bands)
    age = stays["age"].to_numpy(dtype=np.float64)
    band = np.digitize(np.floor(age), [float(e) for e in age_bands])
    levels = [names[b] if np.isfinite(a) else None for a, b in zip(age, band, strict=True)]
    return pd.Series(levels, index=stays.index, dtype=object)


@register_subgroup("image")
def image_level(stays: pd.DataFrame, age_bands: list[float]) -> pd.Series:
    return stays["has_cxr"].map({True: "Available", False: "Not available"}).astype(object)


def level_order(name: str, age_bands: list[float]) -> list[str]:
    """Levels in reading order (age bands ascending), so tables do not sort '80+' before '18-39'."""
    return {"sex": ["Female", "Male"], "age": age_band_names(age_bands),
            "image": ["Available", "Not available"]}.get(name, [])
