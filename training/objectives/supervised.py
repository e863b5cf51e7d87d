"""`supervised`: the masked multi-head BCE of DESIGN section 6, over whatever heads the model has.

For the multi-head model that is sum_h w_h * BCE_h over ehr, cxr and fused (the CXR head on
stays with an image only); for a unimodal model, its one head. The weights come from the
balancer (`head_weights()`: train.loss_weights, or Gradient Blending's estimates).
"""

from __future__ import annotations

from collections.abc import Mapping

from models.losses import masked_multihead_bce
from training.objectives.base import Loss, Objective, Step, register_objective


@register_objective("supervised")
class Supervised(Objective):
    def loss(self, step: Step, head_weights: Mapping[str, float]) -> Loss:
        total, per_head = masked_multihead_bce(step.outputs, step.batch["labels"], step.batch["has_cxr"],
                                               head_weights)
        return Loss(total, per_head)
