"""OGM-GE (Peng et al., CVPR 2022; official code GeWu-Lab/OGM-GE_CVPR2022).

On each step, s_m = sum over the batch's paired stays of head_m's probability of the true
value (averaged over labels); rho_cxr = s_cxr / s_ehr, rho_ehr = 1 / rho_cxr. The dominant
modality's encoder gradients are scaled by k_d = 1 - tanh(alpha * relu(rho_d)) (official
code; `coefficient: paper` uses 1 - tanh(alpha * relu(rho_m - 1)) for both), the other's by 1,
and Gaussian enhancement adds N(0, std(g)) noise to every encoder gradient, during the
modulation epochs. The sums are all-reduced and the noise comes from a generator seeded
identically on every rank, so ranks keep identical weights. `ogm` (training/balancers/ogm.py)
is the same rule without the noise, the MILES paper's separate OGM baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from models.names import MODALITIES
from training.balancers.base import Balancer, register_balancer, true_class_probability


def ogm_coefficients(s_ehr: float, s_cxr: float, alpha: float, variant: str = "official") -> dict[str, float]:
    """k_m per modality from the true-class score sums."""
    if s_ehr <= 0 or s_cxr <= 0:
        return {"ehr": 1.0, "cxr": 1.0}
    rho = {"cxr": s_cxr / s_ehr, "ehr": s_ehr / s_cxr}
    if variant == "paper":
        return {m: 1.0 - math.tanh(alpha * max(rho[m] - 1.0, 0.0)) for m in MODALITIES}
    return {m: 1.0 - math.tanh(alpha * max(rho[m], 0.0)) if rho[m] > 1 else 1.0 for m in MODALITIES}


@register_balancer("ogm_ge")
class OGMGE(Balancer):
    state_attributes = ("coefficient_sums", "steps")
    # A class property, not a setting: with and without the noise are two named baselines
    # (ogm_ge, ogm), so a run's balancer name alone says which one it was.
    gaussian_enhancement: ClassVar[bool] = True

    def __init__(self, *args: Any, alpha: float = 0.5, modulation_start: int = 0, modulation_end: int = 50,
                 coefficient: str = "official", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if coefficient not in ("official", "paper"):
            raise ValueError(f"balancing.coefficient={coefficient!r}: expected official or paper")
        self.alpha, self.variant, self.enhance = float(alpha), coefficient, self.gaussian_enhancement
        self.window = (int(modulation_start), int(modulation_end))
        self.coefficient_sums = {m: 0.0 for m in MODALITIES}
        self.steps = 0
        self.generator: torch.Generator | None = None

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.coefficient_sums, self.steps = {m: 0.0 for m in MODALITIES}, 0
        if self.enhance:
            device = next(self.model.parameters()).device
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.seed * 1009 + epoch)  # same on all ranks, resumable

    def batch_scores(self, batch: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]) -> dict[str, float]:
        paired = batch["has_cxr"].bool()
        sums = torch.stack([true_class_probability(outputs[m].detach(), batch["labels"])[paired].sum()
                            for m in MODALITIES])
        sums = self.ctx.all_reduce_sum(sums)
        return dict(zip(MODALITIES, sums.tolist(), strict=True))

    def after_backward(self, step) -> None:
        start, end = self.window
        if not start <= self.epoch <= end:
            return
        scores = self.batch_scores(step.batch, step.outputs)
        coefficients = ogm_coefficients(scores["ehr"], scores["cxr"], self.alpha, self.variant)
        for modality in MODALITIES:
            k = coefficients[modality]
            for parameter in self.encoder_parameters(modality):
                if parameter.grad is None:
                    continue
                grad = parameter.grad
                grad.mul_(k)
                if self.enhance and grad.numel() > 1:
                    noise = torch.randn(grad.shape, generator=self.generator, device=grad.device, dtype=grad.dtype)
                    grad.add_(noise * grad.std())
            self.coefficient_sums[modality] += k
        self.steps += 1

    def log_stats(self) -> dict[str, Any]:
        return {f"k_{m}": self.coefficient_sums[m] / self.steps if self.steps else 1.0 for m in MODALITIES}
