"""How numbers read in the reports: three decimals, CIs in parentheses, suppressed cells."""

from __future__ import annotations

import math

from evaluation.bootstrap import Estimate
from evaluation.suppression import count_cell

NOT_AVAILABLE = "n/a"
SUPPRESSED_CELL = "suppressed"


def number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return NOT_AVAILABLE
    return f"{value:.{digits}f}"


def with_ci(est: Estimate | None) -> str:
    """0.812 (0.771-0.850); the hyphen is safe because these metrics are never negative."""
    if est is None or not math.isfinite(est.value):
        return NOT_AVAILABLE
    if not math.isfinite(est.ci_low):
        return f"{est.value:.3f} (CI n/a)"
    return f"{est.value:.3f} ({est.ci_low:.3f}-{est.ci_high:.3f})"


def signed_with_ci(est: Estimate | None) -> str:
    """+0.021 (-0.004 to 0.046): differences can be negative, so the range reads 'to'."""
    if est is None or not math.isfinite(est.value):
        return NOT_AVAILABLE
    if not math.isfinite(est.ci_low):
        return f"{est.value:+.3f} (CI n/a)"
    return f"{est.value:+.3f} ({est.ci_low:+.3f} to {est.ci_high:+.3f})"


def count(value: int, min_cell_size: int) -> str:
    cell = count_cell(value, min_cell_size)
    return f"{cell:,}" if isinstance(cell, int) else cell


def percent(value: float, digits: int = 1) -> str:
    return NOT_AVAILABLE if not math.isfinite(value) else f"{100 * value:.{digits}f}%"


def pretty_label(name: str) -> str:
    return name.replace("_", " ").capitalize()
