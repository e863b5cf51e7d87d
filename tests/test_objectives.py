"""Objectives: the registry contract, the supervised loss, and composition with balancers.

The point of keeping the loss (objective) apart from balancing (balancer): a new loss term
must combine with any balancer, MILES and OGM-GE included, and the balancer must take the
decisions it would take anyway. A toy extra objective shows it.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from training_fakes import ToyModel, balanced_step, toy_batch, toy_objective_settings

from data_prep.errors import PipelineInputError
from models.losses import masked_multihead_bce
from training.balancers import build_balancer
from training.balancers.base import true_class_probability
from training.balancers.ogm_ge import ogm_coefficients
from training.distributed import DistContext
from training.engine import Engine
from training.objectives import Loss, Step, build_objective, list_objectives
from training.objectives.supervised import Supervised

EXTRA_WEIGHT = 0.25


class SupervisedPlusLogitPenalty(Supervised):
    """A stand-in for a later objective (a distillation term): the supervised loss plus
    EXTRA_WEIGHT * mean squared fused logit. Not registered; built directly."""

    name = "toy_extra"

    def loss(self, step: Step, head_weights: Mapping[str, float]) -> Loss:
        penalty = EXTRA_WEIGHT * step.outputs["fused"].pow(2).mean()
        return super().loss(step, head_weights).plus("logit_penalty", penalty)


def test_registry_lists_supervised_and_rejects_unknown_names():
    assert "supervised" in list_objectives()
    with pytest.raises(PipelineInputError, match="unknown objective; known: .*supervised"):
        build_objective("nope", ToyModel())
    with pytest.raises(PipelineInputError, match="unknown settings: bogus"):
        build_objective({"name": "supervised", "bogus": 1}, ToyModel())


@pytest.mark.parametrize("name", list_objectives())
def test_every_objective_gives_a_finite_differentiable_loss(name):
    torch.manual_seed(0)
    model = ToyModel()
    batch = toy_batch()
    objective = build_objective(toy_objective_settings(name, batch), model)
    step = objective.forward(batch)
    loss = objective.loss(step, {"ehr": 1.0, "cxr": 1.0, "fused": 1.0})
    assert torch.isfinite(loss.total)
    loss.total.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert objective.state_dict() == {} or isinstance(objective.state_dict(), dict)


def test_supervised_is_the_masked_multihead_bce_with_the_balancers_weights():
    torch.manual_seed(0)
    model = ToyModel()
    batch = toy_batch()
    batch["has_cxr"][:3] = False
    weights = {"ehr": 0.5, "cxr": 2.0, "fused": 1.0}
    loss = build_objective("supervised", model).loss(build_objective("supervised", model).forward(batch), weights)
    expected, per_head = masked_multihead_bce(model(batch), batch["labels"], batch["has_cxr"], weights)
    torch.testing.assert_close(loss.total, expected)
    assert loss.per_head.keys() == per_head.keys() and loss.terms == {}


@pytest.mark.parametrize("balancer_name", ["miles", "ogm_ge"])
def test_an_extra_objective_term_changes_the_loss_and_keeps_the_balancers_decisions(balancer_name):
    torch.manual_seed(0)
    model = ToyModel()
    batch = toy_batch(n=16)
    balancer = build_balancer({"name": balancer_name, **({"alpha": 0.5} if balancer_name == "ogm_ge" else {})},
                              model, seed=3)
    balancer.on_epoch_start(0)
    plain_step, plain = balanced_step(balancer, batch)
    extra_step, extra = balanced_step(balancer, batch, objective=SupervisedPlusLogitPenalty(model))
    # the loss: exactly the supervised loss plus the extra term, head losses untouched
    penalty = EXTRA_WEIGHT * extra_step.outputs["fused"].pow(2).mean()
    torch.testing.assert_close(extra.total, plain.total + penalty)
    assert set(extra.terms) == {"logit_penalty"} and penalty.item() > 0
    for head in plain.per_head:
        torch.testing.assert_close(extra.per_head[head], plain.per_head[head])

    if balancer_name == "ogm_ge":
        # gradient modulation: the encoder gradients of the combined loss are scaled by the same
        # coefficients the balancer derives from the heads' outputs, whatever the objective
        scores = {m: true_class_probability(extra_step.outputs[m].detach(), batch["labels"]).sum().item()
                  for m in ("ehr", "cxr")}
        k = ogm_coefficients(scores["ehr"], scores["cxr"], 0.5)
        balancer.enhance = False  # compare without the noise
        before = {m: model.encoders[m].weight.grad.clone() for m in ("ehr", "cxr")}
        balancer.after_backward(extra_step)
        for m in ("ehr", "cxr"):
            torch.testing.assert_close(model.encoders[m].weight.grad, before[m] * k[m])
        assert min(k.values()) < 1.0
    else:
        # learning-rate balancing: the decision is a function of validation metrics only, and the
        # engine applies it to the optimizer groups the next epoch, objective or not
        metrics = {s: {"fused": {"auroc": 0.80}, "ehr": {"auroc": 0.78}, "cxr": {"auroc": 0.55}}
                   for s in ("all", "paired")}
        multipliers = balancer.on_epoch_end(0, metrics, {})
        assert multipliers == {"ehr": 0.5, "cxr": 1.0, "shared": 1.0}


def test_the_engine_trains_an_extra_objective_under_miles_with_miles_rates():
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    model = ToyModel()
    optimizer = torch.optim.AdamW([{"name": g, "params": ps} for g, ps in model.modality_parameters().items()],
                                  lr=1e-2)
    balancer = build_balancer({"name": "miles"}, model)
    engine = Engine(model, optimizer, SupervisedPlusLogitPenalty(model), balancer, DistContext(),
                    base_lr=1e-2, epochs=2, schedule=OmegaConf.create({"name": "constant"}))
    balancer.multipliers = {"ehr": 0.5, "cxr": 1.0, "shared": 1.0}  # as if MILES slowed EHR last epoch
    alpha, rates = engine.start_epoch(1)
    assert rates == {"ehr": 0.5 * alpha, "cxr": alpha, "shared": alpha}
    assert {g["name"]: g["lr"] for g in optimizer.param_groups} == rates
    before = [p.detach().clone() for p in model.parameters()]
    stats = engine.train_one_epoch([toy_batch(n=16, seed=s) for s in range(3)], 1)
    assert stats["steps"] == 3 and set(stats["loss"]) == {"ehr", "cxr", "fused"}
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    restored = Engine(model, optimizer, SupervisedPlusLogitPenalty(model), build_balancer({"name": "miles"}, model),
                      DistContext(), base_lr=1e-2, epochs=2, schedule={"name": "constant"})
    restored.load_state_dict(engine.state_dict())
    assert restored.balancer.multipliers == balancer.multipliers
