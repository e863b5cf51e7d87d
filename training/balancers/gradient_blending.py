"""Gradient Blending (Wang, Tran and Feiszli, CVPR 2020), the online variant.

The loss is sum_k w_k * loss_k over the heads ehr, cxr and fused. Every `super_epoch`
epochs the weights are re-estimated from the window just trained: the generalization gain
G_k = val_loss_k(start) - val_loss_k(end) and the overfitting growth O_k = gap_k(end) -
gap_k(start), gap = val_loss - train_loss; w_k = |G_k| / O_k^2, normalized to sum to 1.
Losses are mean BCE on gathered validation predictions and all-reduced training sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.names import HEADS
from training.balancers.base import Balancer, register_balancer


def blending_weights(start: Mapping[str, Mapping[str, float]], end: Mapping[str, Mapping[str, float]],
                     eps: float = 1e-8) -> dict[str, float]:
    """w_k = |G_k| / O_k^2 normalized; `start`/`end` hold {"val": {head: loss}, "train": {head: loss}}."""
    raw = {}
    for head in HEADS:
        gain = start["val"][head] - end["val"][head]
        overfit = (end["val"][head] - end["train"][head]) - (start["val"][head] - start["train"][head])
        raw[head] = abs(gain) / max(overfit * overfit, eps)
    total = sum(raw.values())
    if not total or total != total:  # all zero or NaN: keep uniform weights
        return {head: 1.0 / len(HEADS) for head in HEADS}
    return {head: value / total for head, value in raw.items()}


@register_balancer("gradient_blending")
class GradientBlending(Balancer):
    state_attributes = ("weights", "window_start", "window_start_epoch")

    def __init__(self, *args: Any, super_epoch: int = 2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.super_epoch = int(super_epoch)
        self.weights = dict(self.loss_weights)
        self.window_start: dict[str, dict[str, float]] | None = None
        self.window_start_epoch = 0

    def head_weights(self) -> dict[str, float]:
        return dict(self.weights)

    def on_epoch_end(self, epoch, val_metrics, train_stats) -> dict[str, float]:
        snapshot = {"val": {h: float(val_metrics["all"][h]["loss"]) for h in HEADS},
                    "train": {h: float(train_stats["loss"][h]) for h in HEADS}}
        if self.window_start is None:
            self.window_start, self.window_start_epoch = snapshot, epoch
        elif epoch - self.window_start_epoch >= self.super_epoch:
            self.weights = blending_weights(self.window_start, snapshot)
            self.window_start, self.window_start_epoch = snapshot, epoch
        self.stats = {f"w_{h}": self.weights[h] for h in HEADS}
        return dict(self.multipliers)
