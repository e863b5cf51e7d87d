"""Make a model trainable with per-sample gradients (Opacus), and say what was substituted.

DP-SGD clips each patient's gradient, so every layer must give per-sample gradients and no
layer may mix samples of a batch:
- batch norm mixes samples (its batch statistics) -> group norm, gcd(32, C) groups (what
  Opacus's ModuleValidator.fix does), wrapped so that its output is a fresh tensor (torchvision's
  ResNet adds the residual in place, which Opacus's backward hooks do not allow);
- nn.LSTM has no per-sample gradient rule -> Opacus's DPLSTM, same sizes, same weights
  (ModuleValidator.fix); nn.MultiheadAttention -> DPMultiheadAttention likewise;
- in-place activations are made out-of-place (the same backward-hook constraint);
- the multi-head model runs its CXR encoder on every row (zeros where there is no image,
  masked afterwards) so that every layer sees the whole batch;
- learned tokens (models.fusion.base.LearnedToken) get a per-sample gradient rule here.
Any module that still holds trainable parameters Opacus cannot differentiate per sample
stops the run with one line naming it, before any training.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import torch
from opacus.grad_sample import register_grad_sampler
from opacus.grad_sample.grad_sample_module import GradSampleHooks
from opacus.layers import DPGRU, DPLSTM, DPRNN
from opacus.validators import ModuleValidator
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from data_prep.errors import PipelineInputError
from models.fusion.base import LearnedToken

log = logging.getLogger(__name__)


@register_grad_sampler(LearnedToken)
def _learned_token_grad_sample(layer: LearnedToken, activations: list[torch.Tensor],
                               backprops: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """The token's output is the token itself, once per row: row i's gradient is its backprop."""
    return {layer.token: backprops.reshape(backprops.shape[0], *layer.token.shape)}


class PrivateGroupNorm(nn.Module):
    """Group norm standing in for a batch norm layer (no batch statistics), output copied."""

    def __init__(self, num_channels: int, affine: bool = True) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(math.gcd(32, num_channels), num_channels, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x).clone()


def _replace_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm):
            setattr(module, name, PrivateGroupNorm(child.num_features, affine=child.affine))
        else:
            _replace_batch_norm(child)


def _per_sample_capable(module: nn.Module) -> bool:
    return type(module) in GradSampleHooks.GRAD_SAMPLERS or isinstance(module, DPRNN | DPLSTM | DPGRU)


def unsupported_layers(model: nn.Module) -> list[str]:
    """Modules holding trainable parameters of their own that have no per-sample gradient rule."""
    inside_dp_rnn = {id(m) for rnn in model.modules() if isinstance(rnn, DPRNN | DPLSTM | DPGRU)
                     for m in rnn.modules()}
    bad = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own and not _per_sample_capable(module) and id(module) not in inside_dp_rnn:
            bad.append(f"{name or '<model>'} ({type(module).__name__})")
    return bad


def make_private_compatible(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The model with the substitutions above (a new module) and one line per kind of
    substitution, which is also logged; PipelineInputError if a layer cannot be handled."""
    before = {name: type(module).__name__ for name, module in model.named_modules()}
    _replace_batch_norm(model)
    opacus_log = logging.getLogger("opacus.validators.module_validator")
    level = opacus_log.level
    opacus_log.setLevel(logging.WARNING)  # it logs every replaced module's whole repr at info
    try:
        fixed = ModuleValidator.fix(model)
    finally:
        opacus_log.setLevel(level)
    for module in fixed.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    if hasattr(fixed, "encode_every_image"):
        fixed.encode_every_image = True
    errors = ModuleValidator.validate(fixed, strict=False)
    if errors:
        raise PipelineInputError(f"privacy: the model cannot be trained with DP-SGD: {errors[0]}")
    bad = unsupported_layers(fixed)
    if bad:
        raise PipelineInputError(f"privacy: no per-sample gradient rule for {bad[0]}"
                                 f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}: "
                                 "Opacus cannot clip its gradients per patient")
    after = {name: type(module).__name__ for name, module in fixed.named_modules()}
    changes = Counter((before[name], after[name]) for name in before
                      if name in after and before[name] != after[name])
    substitutions = [f"{count} x {old} -> {new}" for (old, new), count in sorted(changes.items())]
    if hasattr(fixed, "encode_every_image"):
        substitutions.append("CXR encoder runs on every row (masked), not only rows with an image")
    for line in substitutions:
        log.info("privacy: substituted %s", line)
    return fixed, substitutions
