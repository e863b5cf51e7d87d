"""MSLR (Yao and Mihalcea, Findings of ACL 2022): modality-specific learning rates.

`dynamic` (the variant used as a baseline in the MILES paper): after each epoch,
multiplier_m = score_m / mean(last `window` scores_m), score_m = head m's validation metric
on the paired stays. `keep`: fixed multipliers per modality (`keep_multipliers`), e.g. the
ratio of each modality's best unimodal learning rate to the global one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from training.balancers.base import MODALITIES, Balancer, register_balancer


def dynamic_multiplier(history: Sequence[float], window: int = 5) -> float:
    """score / mean(last `window` scores, this one included); 1 before any finite score."""
    recent = [s for s in history[-window:] if not math.isnan(s)]
    if not recent or math.isnan(history[-1]) or sum(recent) == 0:
        return 1.0
    return history[-1] / (sum(recent) / len(recent))


@register_balancer("mslr")
class MSLR(Balancer):
    state_attributes = ("scores",)

    def __init__(self, *args: Any, strategy: str = "dynamic", metric: str = "auroc", window: int = 5,
                 keep_multipliers: dict[str, float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if strategy not in ("dynamic", "keep"):
            raise ValueError(f"strategy={strategy!r}: expected dynamic or keep")
        self.strategy, self.metric, self.window = strategy, metric, int(window)
        self.scores: dict[str, list[float]] = {m: [] for m in MODALITIES}
        if strategy == "keep":
            self.multipliers.update({m: float(v) for m, v in dict(keep_multipliers or {}).items()})

    def on_epoch_end(self, epoch, val_metrics, train_stats) -> dict[str, float]:
        if self.strategy == "keep":
            return dict(self.multipliers)
        for modality in MODALITIES:
            self.scores[modality].append(float(val_metrics["paired"][modality][self.metric]))
            self.multipliers[modality] = dynamic_multiplier(self.scores[modality], self.window)
        self.stats = {f"score_{m}": self.scores[m][-1] for m in MODALITIES}
        return dict(self.multipliers)
