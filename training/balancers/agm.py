"""AGM, adaptive gradient modulation (Li et al., ICCV 2023; official code lihong2303/AGM_ICCV2023).

Each step, the fused head's logits are split into Shapley contributions of the two
modalities, computed with a modality replaced by a neutral input (its embedding set to
zero; for the image, also the missing-image path of the fusion):

    phi_ehr = 1/2 [(f(e, c) - f(0, c)) + (f(e, 0) - f(0, 0))]      (phi_cxr symmetric)

score_m = mean BCE of the true labels under phi_m (paired stays), ratio_m =
exp(score_other - score_m), target_m = the same ratio from running (exponential) averages
of the scores, and k_m = exp(alpha * min(target_m - ratio_m, 10)) scales the gradients of
m's encoder during the modulation epochs. Score sums are all-reduced over ranks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from models.names import MODALITIES
from training.balancers.base import Balancer, register_balancer


def shapley_contributions(full: torch.Tensor, no_ehr: torch.Tensor, no_cxr: torch.Tensor,
                          neither: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"ehr": 0.5 * ((full - no_ehr) + (no_cxr - neither)),
            "cxr": 0.5 * ((full - no_cxr) + (no_ehr - neither))}


def agm_coefficients(scores: Mapping[str, float], running: Mapping[str, float], alpha: float) -> dict[str, float]:
    """k_m from this step's scores and the running scores (both: mean NLL, lower is better)."""
    ratio = {"ehr": math.exp(scores["cxr"] - scores["ehr"]), "cxr": math.exp(scores["ehr"] - scores["cxr"])}
    target = {"ehr": math.exp(running["cxr"] - running["ehr"]), "cxr": math.exp(running["ehr"] - running["cxr"])}
    return {m: math.exp(alpha * min(target[m] - ratio[m], 10.0)) for m in MODALITIES}


@register_balancer("agm")
class AGM(Balancer):
    state_attributes = ("running_scores", "coefficient_sums", "steps")

    def __init__(self, *args: Any, alpha: float = 1.0, modulation_start: int = 0, modulation_end: int = 20,
                 momentum: float = 0.9, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha, self.momentum = float(alpha), float(momentum)
        self.window = (int(modulation_start), int(modulation_end))
        self.running_scores: dict[str, float] | None = None
        self.coefficient_sums = {m: 0.0 for m in MODALITIES}
        self.steps = 0
        self._contributions: dict[str, torch.Tensor] | None = None

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.coefficient_sums, self.steps = {m: 0.0 for m in MODALITIES}, 0

    def after_forward(self, step) -> None:
        """The Shapley probes: the fused head re-run with one or both embeddings zeroed."""
        batch, outputs = step.batch, step.outputs
        if self.window[0] <= self.epoch <= self.window[1]:
            with torch.no_grad():
                ehr, cxr = step.embeddings["ehr"].detach(), step.embeddings["cxr"].detach()
                no_image = torch.zeros_like(batch["has_cxr"], dtype=torch.bool)
                fused = lambda e, c, has: self.model.forward_from_embeddings({"ehr": e, "cxr": c}, has)["fused"]  # noqa: E731
                self._contributions = shapley_contributions(
                    outputs["fused"].detach(), fused(torch.zeros_like(ehr), cxr, batch["has_cxr"]),
                    fused(ehr, torch.zeros_like(cxr), no_image),
                    fused(torch.zeros_like(ehr), torch.zeros_like(cxr), no_image))

    def after_backward(self, step) -> None:
        if self._contributions is None:
            return
        batch = step.batch
        paired = batch["has_cxr"].bool()
        sums = torch.stack([
            F.binary_cross_entropy_with_logits(self._contributions[m][paired].float(), batch["labels"][paired],
                                               reduction="none").mean(dim=1).sum() for m in MODALITIES]
            + [paired.sum().to(torch.float32)])
        sums = self.ctx.all_reduce_sum(sums.to(torch.float64)).tolist()
        self._contributions = None
        if sums[-1] == 0:
            return
        scores = {m: sums[k] / sums[-1] for k, m in enumerate(MODALITIES)}
        if self.running_scores is None:
            self.running_scores = dict(scores)
        coefficients = agm_coefficients(scores, self.running_scores, self.alpha)
        self.running_scores = {m: self.momentum * self.running_scores[m] + (1 - self.momentum) * scores[m]
                               for m in MODALITIES}
        for modality in MODALITIES:
            for parameter in self.encoder_parameters(modality):
                if parameter.grad is not None:
                    parameter.grad.mul_(coefficients[modality])
            self.coefficient_sums[modality] += coefficients[modality]
        self.steps += 1

    def log_stats(self) -> dict[str, Any]:
        return {f"k_{m}": self.coefficient_sums[m] / self.steps if self.steps else 1.0 for m in MODALITIES}
