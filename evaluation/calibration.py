"""Calibration of predicted probabilities: Brier score, reliability bins, slope and intercept.

The slope and intercept come from an unpenalized logistic regression of the outcome on
logit(p) (Cox 1958; the recalibration model of TRIPOD): slope 1 and intercept 0 mean the
probabilities need no recalibration; slope < 1 means predictions are too extreme. Solved by
Newton-Raphson (two parameters) so no regularization can sneak in through a library default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROBABILITY_CLIP = 1e-6
MAX_NEWTON_STEPS = 100


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    n: int
    mean_predicted: float
    observed: float


@dataclass(frozen=True)
class Calibration:
    n: int
    brier: float
    slope: float
    intercept: float
    bins: list[ReliabilityBin] = field(default_factory=list)


def logistic_recalibration(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of logit P(y=1) = intercept + slope * logit(p); NaN if it does not exist.

    The fit does not exist with a single class or perfect separation (the estimates diverge).
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(y_prob, dtype=np.float64), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    if y.size < 2 or y.min() == y.max():
        return float("nan"), float("nan")
    design = np.column_stack([np.ones_like(p), np.log(p / (1 - p))])
    beta = np.zeros(2)
    for _ in range(MAX_NEWTON_STEPS):
        mu = 1.0 / (1.0 + np.exp(-(design @ beta)))
        weight = mu * (1 - mu)
        hessian = design.T @ (design * weight[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            return float("nan"), float("nan")
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e6:
            return float("nan"), float("nan")
        if np.abs(step).max() < 1e-10:
            return float(beta[1]), float(beta[0])
    return float("nan"), float("nan")


def reliability_bins(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int) -> list[ReliabilityBin]:
    """Equal-width probability bins on [0, 1]; empty bins are left out."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_prob, dtype=np.float64)
    index = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    bins = []
    for k in range(n_bins):
        inside = index == k
        if inside.any():
            bins.append(ReliabilityBin(k / n_bins, (k + 1) / n_bins, int(inside.sum()),
                                       float(p[inside].mean()), float(y[inside].mean())))
    return bins


def calibration(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int) -> Calibration:
    """Calibration of binary predictions; several labels are pooled (stay-label pairs)."""
    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_prob, dtype=np.float64).ravel()
    if y.size == 0:
        return Calibration(0, float("nan"), float("nan"), float("nan"), [])
    slope, intercept = logistic_recalibration(y, p)
    return Calibration(int(y.size), float(np.mean((p - y) ** 2)), slope, intercept,
                       reliability_bins(y, p, n_bins))
