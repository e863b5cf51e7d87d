"""The supervised loss in the form DP-SGD needs: a mean over the batch of per-stay losses.

The usual multi-head loss averages the CXR head over the rows that have an image, so a
stay's weight depends on how many other stays in the batch have one; under DP-SGD that would
let one patient change the others' (clipped) gradients. Here every head's loss is a sum over
rows divided by the number of rows (the CXR head contributes 0 where there is no image), so
the loss is (1/B) sum_i loss_i and each stay's gradient is its own.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from models.losses import head_row_mask
from models.names import HEADS
from training.objectives.base import Loss, Step
from training.objectives.supervised import Supervised


def per_stay_bce(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """[B] mean BCE over labels per stay; 0 for rows outside `rows`."""
    per_stay = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none").mean(dim=1)
    return per_stay if rows is None else torch.where(rows, per_stay, per_stay.new_zeros(()))


class DecomposableSupervised(Supervised):
    """`supervised` with every head averaged over all rows of the batch."""

    def loss(self, step: Step, head_weights: Mapping[str, float]) -> Loss:
        labels, has_cxr = step.batch["labels"], step.batch["has_cxr"]
        heads = [head for head in HEADS if head in step.outputs]
        weights = {head: 1.0 for head in heads} | dict(head_weights)
        per_head = {head: per_stay_bce(step.outputs[head], labels, head_row_mask(head, has_cxr)).mean()
                    for head in heads}
        total = sum(float(weights[head]) * value for head, value in per_head.items())
        return Loss(total, per_head)  # type: ignore[arg-type]
