"""The balancer interface: what balancing does, at named points of the engine's step and epoch.

A balancer changes learning rates (per-group multipliers: MILES, MSLR, MSES), gradients
(OGM-GE, AGM, MMPareto) or the weights and terms of the loss (Gradient Blending, PMR). It
never computes the model's forward pass or the supervised loss: those are the objective's
(training/objectives), so any objective composes with any balancer. The engine
(training/engine.py) calls, in this order:

    on_epoch_start(epoch)
    per step:  step = objective.forward(batch)                       # embeddings, logits per head
               after_forward(step)                                   # extra probes (AGM), bookkeeping (PMR)
               loss = objective.loss(step, head_weights())           # head_weights: loss re-weighting
               loss = adjust_loss(step, loss)                        # extra balancing terms (PMR)
               backward(step, loss, scale)                           # scale: the AMP loss scaler or identity
               (gradients are averaged over ranks here)
               after_backward(step)                                  # gradient modulation
    multipliers = on_epoch_end(epoch, val_metrics, train_stats)      # per-group LR multipliers

`multipliers` ({"ehr", "cxr", "shared"}) multiply the global rate of the next epoch:
lr_group = global_lr(epoch) * multiplier_group. `log_stats()` returns the decisions to log
(numbers or short strings); `state_dict()` / `load_state_dict()` make them resumable.

Under DDP every statistic a balancer acts on must be identical on all ranks: sums are
all-reduced through `self.ctx`, validation metrics come from gathered predictions.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from models.names import HEADS, PARAMETER_GROUPS
from models.registry import Registry
from training.distributed import DistContext
from training.objectives.base import Loss, Step

GROUPS = PARAMETER_GROUPS

ValMetrics = Mapping[str, Mapping[str, Mapping[str, float]]]  # subset -> head -> metric -> value
TrainStats = Mapping[str, Any]


class Balancer:
    """No balancing: fixed head weights and the global rate for every group.

    Subclasses override only the hooks they need and list in `state_attributes` the
    attributes that must survive a resume.
    """

    name: ClassVar[str] = "base"
    state_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: nn.Module, ctx: DistContext | None = None,
                 loss_weights: Mapping[str, float] | None = None, seed: int = 0,
                 unimodal_heads_in: str = "encoder", **settings: Any) -> None:
        if settings:
            raise TypeError(f"balancer {self.name!r} got unknown settings: {', '.join(sorted(settings))}")
        self.model = model
        self.ctx = ctx or DistContext()
        self.loss_weights = {head: 1.0 for head in HEADS} | {k: float(v) for k, v in (loss_weights or {}).items()}
        self.seed = int(seed)
        self.unimodal_heads_in = unimodal_heads_in  # read by the engine to build the LR groups
        self.epoch = 0
        self.multipliers: dict[str, float] = {group: 1.0 for group in GROUPS}
        self.stats: dict[str, Any] = {}

    # ---- step hooks --------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def after_forward(self, step: Step) -> None:
        """The step's embeddings and logits exist; the loss does not yet."""

    def head_weights(self) -> dict[str, float]:
        """Weights of the supervised head losses (loss re-weighting balancers change them)."""
        return dict(self.loss_weights)

    def adjust_loss(self, step: Step, loss: Loss) -> Loss:
        """Add balancing terms to the objective's loss (`loss.plus(name, term)`)."""
        return loss

    def backward(self, step: Step, loss: Loss, scale: Callable[[torch.Tensor], torch.Tensor]) -> None:
        scale(loss.total).backward()

    def after_backward(self, step: Step) -> None:
        """Gradients are already averaged over ranks here (and unscaled under fp16 AMP)."""

    # ---- epoch hooks -------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, val_metrics: ValMetrics, train_stats: TrainStats) -> dict[str, float]:
        return dict(self.multipliers)

    def log_stats(self) -> dict[str, Any]:
        return dict(self.stats)

    # ---- helpers for subclasses --------------------------------------------------------
    def encoder_parameters(self, modality: str) -> list[nn.Parameter]:
        """Encoder + projection of one modality (never its unimodal head): what gradient
        modulation methods scale, as the original OGM-GE/AGM code scales only the encoders."""
        modules = self.model.modality_modules("shared")[modality]
        return [p for module in modules for p in module.parameters() if p.requires_grad]

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"multipliers": dict(self.multipliers), "stats": dict(self.stats), "epoch": self.epoch}
        for attribute in self.state_attributes:
            state[attribute] = copy.deepcopy(getattr(self, attribute))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.multipliers = dict(state["multipliers"])
        self.stats = dict(state["stats"])
        self.epoch = int(state.get("epoch", 0))
        for attribute in self.state_attributes:
            value = state[attribute]
            current = getattr(self, attribute, None)
            if isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor):
                value = value.to(current.device)
            setattr(self, attribute, copy.deepcopy(value))


BALANCERS: Registry[Balancer] = Registry("balancer")


def register_balancer(name: str) -> Callable[[type[Balancer]], type[Balancer]]:
    """Class decorator: `@register_balancer("miles")` makes configs/balancing/miles.yaml usable."""
    return BALANCERS.register_class(name)


def list_balancers(pattern: str = "*") -> list[str]:
    return BALANCERS.names(pattern)


def build_balancer(settings: Mapping[str, Any], model: nn.Module, ctx: DistContext | None = None,
                   loss_weights: Mapping[str, float] | None = None, seed: int = 0) -> Balancer:
    """The balancer named by `settings["name"]` (the `balancing` config group); the other keys
    are its settings. Unknown names or settings are one-line configuration errors."""
    return BALANCERS.build(settings, "balancing.name", "balancing", model, ctx, loss_weights=loss_weights, seed=seed)


def true_class_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row: the probability the head gives the true value of each label, averaged over
    labels (balancing.md's s_m for binary multi-label outputs)."""
    probs = torch.sigmoid(logits.float())
    return torch.where(labels > 0.5, probs, 1.0 - probs).mean(dim=1)
