"""MMPareto (Wei and Hu, ICML 2024; official code GeWu-Lab/MMPareto_ICML2024).

For each modality encoder (encoder + projection), the gradient of the fused head's loss
g_f and of its own unimodal head's loss g_u are combined: when cos(g_f, g_u) > 0 with
weights (0.5, 0.5), else with the min-norm (MGDA) weights of the two; g = 2 w1 g_f +
2 w2 g_u. In the conflicting case g is rescaled up to the norm of the plain summed
gradient g_f + g_u when that is larger, and multiplied by gamma (1.5), our reading of the
paper's magnitude enhancement. The heads and the fusion module keep the plain gradient of
the summed loss. Under DDP, g_f and g_u are averaged over ranks before they are compared.
"""

from __future__ import annotations

from typing import Any

import torch

from models.names import MODALITIES
from training.balancers.base import Balancer, register_balancer


def min_norm_weights(g1: torch.Tensor, g2: torch.Tensor) -> tuple[float, float]:
    """argmin_w ||w g1 + (1 - w) g2|| over w in [0, 1] (the two-task MGDA solution)."""
    difference = g1 - g2
    denominator = float(difference.dot(difference))
    if denominator == 0.0:
        return 0.5, 0.5
    w = float((g2 - g1).dot(g2)) / denominator
    w = min(max(w, 0.0), 1.0)
    return w, 1.0 - w


def pareto_gradient(g_fused: torch.Tensor, g_unimodal: torch.Tensor, gamma: float = 1.5
                    ) -> tuple[torch.Tensor, float, bool]:
    """(combined gradient, cosine, conflicting) for one encoder's flattened gradients."""
    norms = float(g_fused.norm()) * float(g_unimodal.norm())
    cosine = float(g_fused.dot(g_unimodal)) / norms if norms > 0 else 1.0
    if cosine > 0:
        return g_fused + g_unimodal, cosine, False
    w1, w2 = min_norm_weights(g_fused, g_unimodal)
    combined = 2 * w1 * g_fused + 2 * w2 * g_unimodal
    summed_norm, combined_norm = float((g_fused + g_unimodal).norm()), float(combined.norm())
    if combined_norm > 0 and summed_norm > combined_norm:
        combined = combined * (summed_norm / combined_norm)
    return gamma * combined, cosine, True


def _flat(grads, parameters) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, parameters, strict=True)])


@register_balancer("mmpareto")
class MMPareto(Balancer):
    state_attributes = ("conflict_steps", "steps")

    def __init__(self, *args: Any, gamma: float = 1.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gamma = float(gamma)
        self.conflict_steps = {m: 0 for m in MODALITIES}
        self.steps = 0

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.conflict_steps, self.steps = {m: 0 for m in MODALITIES}, 0

    def backward(self, step, loss, scale) -> None:
        weights, per_head = self.head_weights(), loss.per_head
        combined = {}
        for modality in MODALITIES:
            parameters = self.encoder_parameters(modality)
            g_f = torch.autograd.grad(scale(weights["fused"] * per_head["fused"]), parameters,
                                      retain_graph=True, allow_unused=True)
            g_u = torch.autograd.grad(scale(weights[modality] * per_head[modality]), parameters,
                                      retain_graph=True, allow_unused=True)
            flat_f = self.ctx.all_reduce_mean(_flat(g_f, parameters))
            flat_u = self.ctx.all_reduce_mean(_flat(g_u, parameters))
            gradient, _, conflicting = pareto_gradient(flat_f, flat_u, self.gamma)
            combined[modality] = (parameters, gradient)
            self.conflict_steps[modality] += int(conflicting)
        scale(loss.total).backward()
        for parameters, gradient in combined.values():
            offset = 0
            for parameter in parameters:
                n = parameter.numel()
                parameter.grad = gradient[offset:offset + n].view_as(parameter).clone()
                offset += n
        self.steps += 1

    def log_stats(self) -> dict[str, Any]:
        return {f"conflict_fraction_{m}": self.conflict_steps[m] / self.steps if self.steps else 0.0
                for m in MODALITIES}
