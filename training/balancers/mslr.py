"""MSLR (Yao and Mihalcea, Findings of ACL 2022): modality-specific learning rates, in the
three strategies the MILES paper compares against as separate baselines.

Each modality's encoder group gets its own multiplier of the global rate; the fusion module
and fused head (`shared`) always train at the global rate. `unimodal_multipliers` are each
modality's best unimodal learning rate divided by `train.lr` (found beforehand, e.g. by
training each encoder alone): the hooks give a balancer multipliers of the global rate, not
absolute rates, so the ratio is what a configuration can state.

- `mslr_k` (keep): multiplier_m = k_m every epoch.
- `mslr_s` (smooth): multiplier_m moves linearly from k_m (epoch 0) to 1 (epoch
  `smooth_epochs` and after): each encoder starts at the rate it learns best at alone and
  ends at the common rate of joint training. The reference gives no formula; this is ours.
- `mslr_d` (dynamic): multiplier_m = k_m * score_m / mean(last `window` scores_m), score_m =
  head m's validation `metric` on the paired stays, this epoch's score included.

All three are pure functions of the epoch and the recorded scores, so a resumed run sets the
same rates as an uninterrupted one. They live in one module because they share the settings
and the validation of k_m.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from models.names import MODALITIES
from training.balancers.base import Balancer, TrainStats, ValMetrics, register_balancer

METRICS = ("auroc", "auprc")


def dynamic_multiplier(history: Sequence[float], window: int = 5) -> float:
    """score / mean(last `window` scores, this one included); 1 before any finite score."""
    recent = [s for s in history[-window:] if not math.isnan(s)]
    if not recent or math.isnan(history[-1]) or sum(recent) == 0:
        return 1.0
    return history[-1] / (sum(recent) / len(recent))


def smooth_multiplier(keep: float, epoch: int, smooth_epochs: int) -> float:
    """Linear from `keep` at epoch 0 to 1 at epoch `smooth_epochs` (then 1)."""
    progress = min(1.0, epoch / smooth_epochs)
    return keep + (1.0 - keep) * progress


def checked_unimodal_multipliers(values: Mapping[str, float] | None) -> dict[str, float]:
    """k_m per modality (1 where not given); a typo in a modality name or a non-positive
    rate would silently train a different experiment, so both are configuration errors."""
    given = dict(values or {})
    unknown = sorted(set(given) - set(MODALITIES))
    if unknown:
        raise ValueError(f"balancing.unimodal_multipliers: unknown modality {', '.join(unknown)}; "
                         f"expected {' or '.join(MODALITIES)}")
    multipliers = {m: float(given.get(m, 1.0)) for m in MODALITIES}
    bad = [m for m, v in multipliers.items() if not (v > 0 and math.isfinite(v))]
    if bad:
        raise ValueError(f"balancing.unimodal_multipliers.{bad[0]}={multipliers[bad[0]]}: expected a positive number")
    return multipliers


class ModalitySpecificRates(Balancer):
    """Shared by the three strategies: the unimodal multipliers, which are epoch 0's rates."""

    def __init__(self, *args: Any, unimodal_multipliers: Mapping[str, float] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unimodal_multipliers = checked_unimodal_multipliers(unimodal_multipliers)
        # the loop reads the multipliers before the first epoch starts: epoch 0 runs at k_m
        self.multipliers.update(self.unimodal_multipliers)


@register_balancer("mslr_k")
class MSLRKeep(ModalitySpecificRates):
    """Each encoder keeps its best unimodal rate (times the global schedule) all run long."""


@register_balancer("mslr_s")
class MSLRSmooth(ModalitySpecificRates):
    def __init__(self, *args: Any, smooth_epochs: int = 5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if int(smooth_epochs) < 1:
            raise ValueError(f"balancing.smooth_epochs={smooth_epochs}: expected an integer >= 1")
        self.smooth_epochs = int(smooth_epochs)

    def on_epoch_end(self, epoch: int, val_metrics: ValMetrics, train_stats: TrainStats) -> dict[str, float]:
        for modality in MODALITIES:  # the rates of the next epoch
            self.multipliers[modality] = smooth_multiplier(self.unimodal_multipliers[modality], epoch + 1,
                                                           self.smooth_epochs)
        return dict(self.multipliers)


@register_balancer("mslr_d")
class MSLRDynamic(ModalitySpecificRates):
    state_attributes = ("scores",)

    def __init__(self, *args: Any, metric: str = "auroc", window: int = 5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if metric not in METRICS:
            raise ValueError(f"balancing.metric={metric!r}: expected one of {', '.join(METRICS)}")
        if int(window) < 1:
            raise ValueError(f"balancing.window={window}: expected an integer >= 1")
        self.metric, self.window = metric, int(window)
        self.scores: dict[str, list[float]] = {m: [] for m in MODALITIES}

    def on_epoch_end(self, epoch: int, val_metrics: ValMetrics, train_stats: TrainStats) -> dict[str, float]:
        for modality in MODALITIES:
            self.scores[modality].append(float(val_metrics["paired"][modality][self.metric]))
            self.multipliers[modality] = (self.unimodal_multipliers[modality]
                                          * dynamic_multiplier(self.scores[modality], self.window))
        self.stats = {f"score_{m}": self.scores[m][-1] for m in MODALITIES}
        return dict(self.multipliers)
