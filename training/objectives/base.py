"""The objective interface: what a training step computes from a batch and minimizes.

An objective owns the forward pass and the loss; it knows nothing of learning rates or
gradients. A balancer (training/balancers) owns those and knows nothing of how the loss
was made. The engine (training/engine.py) calls both, so any objective composes with any
balancer, MILES included (docs/methods/regimes.md has the hook order):

    step = objective.forward(batch)                 # embeddings + logits per head
    balancer.after_forward(step)
    loss = objective.loss(step, balancer.head_weights())
    loss = balancer.adjust_loss(step, loss)
    balancer.backward(step, loss, scale) ... after_backward(step)

`Loss.total` is what is minimized; `Loss.per_head` (graph kept) the supervised head losses
that head-reweighting balancers (Gradient Blending, MMPareto) act on; `Loss.terms` any
further named terms (a distillation term, a prototype term), logged per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from models.registry import Registry


@dataclass
class Step:
    """What one training step has computed so far: the batch, each modality's embedding and
    each head's logits. Balancers read it (OGM-GE's scores, AGM's probes, PMR's prototypes)."""

    batch: Mapping[str, torch.Tensor]
    embeddings: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]


@dataclass
class Loss:
    total: torch.Tensor
    per_head: dict[str, torch.Tensor]
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def plus(self, name: str, value: torch.Tensor) -> Loss:
        """This loss with one more named term added to the total (the head losses unchanged)."""
        return Loss(self.total + value, self.per_head, {**self.terms, name: value})


class Objective:
    """The forward pass of the model and a loss over its heads; subclasses define `loss`."""

    name: ClassVar[str] = "base"

    def __init__(self, model: nn.Module, **settings: Any) -> None:
        if settings:
            raise TypeError(f"objective {self.name!r} got unknown settings: {', '.join(sorted(settings))}")
        self.model = model

    def forward(self, batch: Mapping[str, torch.Tensor]) -> Step:
        embeddings = self.model.embed(batch)
        return Step(batch, embeddings, self.model.forward_from_embeddings(embeddings, batch["has_cxr"]))

    def loss(self, step: Step, head_weights: Mapping[str, float]) -> Loss:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Objectives of today are stateless; a stateful one (an EMA teacher) restores here."""


OBJECTIVES: Registry[Objective] = Registry("objective")


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: `@register_objective("supervised")` makes `regime.objective=supervised` usable."""
    return OBJECTIVES.register_class(name)


def list_objectives(pattern: str = "*") -> list[str]:
    return OBJECTIVES.names(pattern)


def build_objective(settings: Mapping[str, Any] | str, model: nn.Module) -> Objective:
    """The objective named by `settings` (a name, or a mapping with `name` and its settings)."""
    options = {"name": settings} if isinstance(settings, str) else settings
    return OBJECTIVES.build(options, "regime.objective", "regime.objective", model)
