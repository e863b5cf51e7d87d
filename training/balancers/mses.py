"""MSES, modality-specific early stopping (a baseline of the MILES paper, Guerra-Manzanares and
Shamout, IJCNN 2025).

Each modality's learning-rate group stops (multiplier 0 for the rest of the run) once its
unimodal head's validation `metric` has not improved for `patience` epochs; the fusion module
and the fused head keep training at the global rate, and the loop's own early stopping on the
fused head still ends the run. The idea: the fast modality's encoder, once its own head has
peaked, stops pulling the joint representation further towards itself.

Choices the description leaves open, made here (docs/methods/balancing.md):
- The head is scored on all validation stays it is defined on (`all`: the EHR head on every
  stay, the CXR head on stays with an image), as the loop's early stopping scores the fused
  head; no comparison across heads is made, so the paired subset is not needed.
- "Improved" is strictly better than the best so far. An undefined (NaN) score neither
  improves nor counts towards the patience: it is no evidence either way.
- A stop is final, and nothing is rolled back: the encoder keeps the weights it had when it
  stopped (its best epoch plus `patience` epochs of training).
- Stopped means the group's parameters do not change: multiplier 0 (so AdamW's decoupled
  weight decay, lr * wd, is 0 too), their gradients are dropped after the backward pass (so
  they neither count towards gradient clipping nor move Adam's moments), and its batch-norm
  layers stop updating their running statistics (momentum 0), which a learning rate of 0
  alone would not stop. The unimodal head follows its group (`unimodal_heads_in`): frozen with
  the encoder by default, or, under `shared`, trained on as a probe of the frozen encoder.
- On resume the counters and the stop epochs come from the checkpoint, the frozen weights
  come from the model checkpoint, and the batch-norm freeze is re-applied to the rebuilt
  model at the next epoch start.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from models.names import MODALITIES
from training.balancers.base import Balancer, TrainStats, ValMetrics, register_balancer

METRICS = ("auroc", "auprc")


def patience_step(score: float, best: float | None, waited: int) -> tuple[float | None, int]:
    """(best, epochs without improvement) after one more validation score."""
    if math.isnan(score):
        return best, waited
    if best is None or score > best:
        return score, 0
    return best, waited + 1


@register_balancer("mses")
class MSES(Balancer):
    state_attributes = ("best", "waited", "stopped_epoch")

    def __init__(self, *args: Any, metric: str = "auroc", patience: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if metric not in METRICS:
            raise ValueError(f"balancing.metric={metric!r}: expected one of {', '.join(METRICS)}")
        if int(patience) < 1:
            raise ValueError(f"balancing.patience={patience}: expected an integer >= 1")
        self.metric, self.patience = metric, int(patience)
        self.best: dict[str, float | None] = {m: None for m in MODALITIES}
        self.waited = {m: 0 for m in MODALITIES}
        self.stopped_epoch: dict[str, int | None] = {m: None for m in MODALITIES}

    def stopped(self) -> list[str]:
        return [m for m in MODALITIES if self.stopped_epoch[m] is not None]

    def group_parameters(self, modality: str) -> list[nn.Parameter]:
        """The parameters of the modality's learning-rate group, exactly as the optimizer has them."""
        return list(self.model.modality_parameters(self.unimodal_heads_in)[modality])

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        for modality in self.stopped():
            for module in self.model.modality_modules(self.unimodal_heads_in)[modality]:
                for layer in module.modules():
                    if isinstance(layer, _BatchNorm):
                        layer.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged

    def after_backward(self, step) -> None:
        for modality in self.stopped():
            for parameter in self.group_parameters(modality):
                parameter.grad = None

    def on_epoch_end(self, epoch: int, val_metrics: ValMetrics, train_stats: TrainStats) -> dict[str, float]:
        for modality in MODALITIES:
            if self.stopped_epoch[modality] is not None:
                continue
            score = float(val_metrics["all"][modality][self.metric])
            self.best[modality], self.waited[modality] = patience_step(score, self.best[modality],
                                                                       self.waited[modality])
            if self.waited[modality] >= self.patience:
                self.stopped_epoch[modality] = epoch
                self.multipliers[modality] = 0.0
        self.stats = {}
        for modality in MODALITIES:
            best = self.best[modality]
            self.stats |= {f"best_{modality}": math.nan if best is None else best,
                           f"waited_{modality}": self.waited[modality],
                           f"stopped_{modality}": int(self.stopped_epoch[modality] is not None)}
        return dict(self.multipliers)
