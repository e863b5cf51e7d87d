"""MILES (Guerra-Manzanares and Shamout, IJCNN 2025, arXiv 2510.17394; Algorithm 1).

After each epoch, from the validation metric M of each head on the stays with both
modalities:

    u_ehr = (M_fused - M_cxr) / M_fused      u_cxr = (M_fused - M_ehr) / M_fused
    delta = |u_ehr - u_cxr|

and the learning-rate multipliers of the next epoch follow `miles_decision`. The slowed
modality's rate is always mu * alpha (alpha = the global rate), never mu times an already
reduced rate; the fusion module and fused head always train at alpha.

`scale` says which M enters the rates. `raw` is the paper's rule (the metric itself). The
paper used accuracy/F1; on AUROC, whose chance level is 0.5, the raw gap |u_ehr - u_cxr| =
|M_ehr - M_cxr| / M_fused stays small (tau = 0.2 at M_fused = 0.8 needs the unimodal heads
0.16 AUROC apart), so `chance_corrected` measures each head by its gain over chance,
(M - chance) / (1 - chance): 2 AUROC - 1, and for AUPRC the gain over the label prevalence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from training.balancers.base import HEADS, Balancer, TrainStats, ValMetrics, register_balancer

ACTIONS = ("reset_balanced", "reset_fused_worse", "slow_ehr", "slow_cxr", "undefined")

# The score a head gets by chance, from the validation scores of its rows (training/metrics.py):
# AUROC 0.5 whatever the labels; macro AUPRC the mean prevalence of the labels it averages over.
CHANCE_LEVELS: dict[str, Callable[[Mapping[str, float]], float]] = {
    "auroc": lambda scores: 0.5,
    "auprc": lambda scores: float(scores.get("prevalence", math.nan)),
}


def raw_scale(metric: str, scores: Mapping[str, float]) -> float:
    """The paper's rule: the metric itself."""
    return float(scores[metric])


def chance_corrected_scale(metric: str, scores: Mapping[str, float]) -> float:
    """(M - chance) / (1 - chance): 0 at chance, 1 for a perfect head, so the utilization
    rates compare what the heads learned rather than the floor every head starts from."""
    chance = CHANCE_LEVELS[metric](scores)
    return (float(scores[metric]) - chance) / (1.0 - chance)


METRIC_SCALES: dict[str, Callable[[str, Mapping[str, float]], float]] = {
    "raw": raw_scale,
    "chance_corrected": chance_corrected_scale,
}


@dataclass(frozen=True)
class MilesDecision:
    u_ehr: float
    u_cxr: float
    delta: float
    action: str
    multipliers: dict[str, float]


def conditional_utilization(m_fused: float, m_ehr: float, m_cxr: float) -> tuple[float, float]:
    """(u_ehr, u_cxr): the fraction of the fused metric lost when only the other head is used."""
    return (m_fused - m_cxr) / m_fused, (m_fused - m_ehr) / m_fused


def miles_decision(m_fused: float, m_ehr: float, m_cxr: float, tau: float, mu: float,
                   previous: dict[str, float], reset_other: bool = True) -> MilesDecision:
    """The five branches of Algorithm 1 as multipliers of the global rate.

    Undefined (both rates reset) when a metric is NaN or M_fused <= 0: u divides by M_fused,
    and a fused head at or below chance (possible only on the chance-corrected scale) says
    nothing about what either modality adds.
    """
    if any(math.isnan(m) for m in (m_fused, m_ehr, m_cxr)) or m_fused <= 0:
        return MilesDecision(math.nan, math.nan, math.nan, "undefined",
                             {"ehr": 1.0, "cxr": 1.0, "shared": 1.0})
    u_ehr, u_cxr = conditional_utilization(m_fused, m_ehr, m_cxr)
    delta = abs(u_ehr - u_cxr)
    if delta <= tau:
        action = "reset_balanced"
    elif u_ehr < 0 and u_cxr < 0:
        action = "reset_fused_worse"
    elif u_ehr > 0 and u_cxr < 0:
        action = "slow_ehr"          # the EHR head alone beats the fused head: EHR dominates
    elif u_ehr < 0 and u_cxr > 0:
        action = "slow_cxr"
    elif u_ehr < u_cxr:
        action = "slow_cxr"          # both useful: slow the stronger modality (M_cxr > M_ehr)
    else:
        action = "slow_ehr"
    if action.startswith("reset"):
        multipliers = {"ehr": 1.0, "cxr": 1.0}
    else:
        slowed = action.removeprefix("slow_")
        other = "cxr" if slowed == "ehr" else "ehr"
        multipliers = {slowed: mu, other: 1.0 if reset_other else float(previous.get(other, 1.0))}
    return MilesDecision(u_ehr, u_cxr, delta, action, {**multipliers, "shared": 1.0})


@register_balancer("miles")
class Miles(Balancer):
    state_attributes = ()

    def __init__(self, *args: Any, tau: float = 0.2, mu: float = 0.5, metric: str = "auroc",
                 scale: str = "raw", reset_other: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= float(tau) <= 1.0 or not 0.0 < float(mu) <= 1.0:
            raise ValueError(f"tau={tau} must be in [0, 1] and mu={mu} in (0, 1]")
        if metric not in CHANCE_LEVELS:
            raise ValueError(f"balancing.metric={metric!r}: expected one of {', '.join(CHANCE_LEVELS)}")
        if scale not in METRIC_SCALES:
            raise ValueError(f"balancing.scale={scale!r}: expected one of {', '.join(METRIC_SCALES)}")
        self.tau, self.mu, self.metric, self.reset_other = float(tau), float(mu), metric, bool(reset_other)
        self.scale = scale

    def scaled_metrics(self, val_metrics: ValMetrics) -> dict[str, float]:
        """M per head on the paired validation stays, on the configured scale."""
        return {head: METRIC_SCALES[self.scale](self.metric, val_metrics["paired"][head]) for head in HEADS}

    def on_epoch_end(self, epoch: int, val_metrics: ValMetrics, train_stats: TrainStats) -> dict[str, float]:
        m = self.scaled_metrics(val_metrics)
        decision = miles_decision(m["fused"], m["ehr"], m["cxr"], self.tau, self.mu, self.multipliers,
                                  self.reset_other)
        self.multipliers = decision.multipliers
        self.stats = {"u_ehr": decision.u_ehr, "u_cxr": decision.u_cxr, "delta": decision.delta,
                      "action": decision.action}
        return dict(self.multipliers)
