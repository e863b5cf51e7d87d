"""Each baseline's rule on toy values computed by hand, and the registry contract.

Every registered balancer is run through the loop's hooks on a toy model and must round-trip
its state (tests parametrize over `list_balancers()`, so a new balancer is covered at once).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from training_fakes import ToyModel, balanced_step, toy_batch

from data_prep.errors import PipelineInputError
from training.balancers import build_balancer, list_balancers
from training.balancers.agm import agm_coefficients, shapley_contributions
from training.balancers.base import true_class_probability
from training.balancers.gradient_blending import blending_weights
from training.balancers.mmpareto import min_norm_weights, pareto_gradient
from training.balancers.mses import patience_step
from training.balancers.mslr import dynamic_multiplier, smooth_multiplier
from training.balancers.ogm_ge import ogm_coefficients
from training.balancers.pmr import prototype_logits, weaker_modality

ROOT = Path(__file__).resolve().parent.parent
# the MILES paper's seven baselines (MSES, MSLR-K/S/D, OGM, OGM-GE, G-Blend) and the others
EXPECTED = {"none", "miles", "mses", "mslr_k", "mslr_s", "mslr_d", "ogm", "ogm_ge", "gradient_blending",
            "agm", "pmr", "mmpareto"}


def test_registry_lists_all_methods_and_rejects_unknown_names():
    assert set(list_balancers()) >= EXPECTED
    with pytest.raises(PipelineInputError, match="known: .*miles"):
        build_balancer({"name": "nope"}, ToyModel())
    with pytest.raises(PipelineInputError, match="unknown settings: bogus"):
        build_balancer({"name": "none", "bogus": 1}, ToyModel())


def test_every_registered_balancer_has_exactly_one_config_and_back():
    # configs/balancing/<name>.yaml <-> @register_balancer("<name>"): no orphan YAML, no unreachable class
    configs = {path.stem for path in (ROOT / "configs" / "balancing").glob("*.yaml")}
    assert configs == set(list_balancers())


def test_mslr_was_split_into_its_three_strategies():
    with pytest.raises(PipelineInputError, match="unknown balancer; known: .*mslr_d, mslr_k, mslr_s"):
        build_balancer({"name": "mslr"}, ToyModel())


def test_true_class_probability_averages_over_labels():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    assert true_class_probability(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx((0.5 + 0.25) / 2)


def test_ogm_ge_coefficients_by_hand():
    # s_ehr = 6, s_cxr = 3: rho_ehr = 2 (dominant), k_ehr = 1 - tanh(0.5 * 2); the other stays 1
    k = ogm_coefficients(6.0, 3.0, alpha=0.5)
    assert k["ehr"] == pytest.approx(1 - math.tanh(1.0)) and k["cxr"] == 1.0
    paper = ogm_coefficients(6.0, 3.0, alpha=0.5, variant="paper")  # 1 - tanh(0.5 * relu(rho - 1))
    assert paper["ehr"] == pytest.approx(1 - math.tanh(0.5)) and paper["cxr"] == 1.0
    assert ogm_coefficients(3.0, 3.0, alpha=0.5) == {"ehr": 1.0, "cxr": 1.0}


def ogm_step(name: str, **settings):
    """One step of `name` on the toy model: (encoder gradients before after_backward, after, k)."""
    torch.manual_seed(0)
    model = ToyModel()
    balancer = build_balancer({"name": name, "alpha": 0.5, **settings}, model)
    batch = toy_batch()
    balancer.on_epoch_start(0)
    step, _ = balanced_step(balancer, batch)
    outputs = step.outputs
    before = {m: model.encoders[m].weight.grad.clone() for m in ("ehr", "cxr")}
    s = {m: true_class_probability(outputs[m].detach(), batch["labels"]).sum().item() for m in ("ehr", "cxr")}
    balancer.after_backward(step)
    after = {m: model.encoders[m].weight.grad.clone() for m in ("ehr", "cxr")}
    return before, after, ogm_coefficients(s["ehr"], s["cxr"], 0.5)


def test_ogm_scales_the_dominant_encoder_gradient_without_noise():
    before, after, k = ogm_step("ogm")
    for m in ("ehr", "cxr"):
        torch.testing.assert_close(after[m], before[m] * k[m])
    assert min(k.values()) < 1.0 == max(k.values())


def test_ogm_ge_adds_gaussian_noise_on_top_of_the_same_coefficients():
    before, after, k = ogm_step("ogm_ge")
    for m in ("ehr", "cxr"):
        scaled = before[m] * k[m]
        noise = after[m] - scaled
        assert not torch.allclose(after[m], scaled)
        # N(0, std(g)) per tensor, std taken after scaling: the noise has about that spread
        assert 0.2 < noise.std().item() / scaled.std().item() < 3.0


def test_ogm_has_no_gaussian_enhancement_setting():
    # the two baselines are two names, not a flag: a stray flag is a one-line configuration error
    for name in ("ogm", "ogm_ge"):
        with pytest.raises(PipelineInputError, match="unknown settings: gaussian_enhancement"):
            build_balancer({"name": name, "gaussian_enhancement": False}, ToyModel())


def unimodal_scores(ehr: float, cxr: float, metric: str = "auroc"):
    heads = {"ehr": {metric: ehr}, "cxr": {metric: cxr}, "fused": {metric: 0.9}}
    return {"paired": heads, "all": heads}


def test_mslr_d_multiplier_from_last_five_scores():
    scores = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert dynamic_multiplier(scores) == pytest.approx(1.0 / ((0.6 + 0.7 + 0.8 + 0.9 + 1.0) / 5))
    assert dynamic_multiplier([0.6]) == pytest.approx(1.0)
    assert dynamic_multiplier([0.6, math.nan]) == 1.0               # an undefined score changes nothing
    balancer = build_balancer({"name": "mslr_d"}, ToyModel())
    for epoch, (ehr, cxr) in enumerate([(0.6, 0.5), (0.8, 0.5)]):
        multipliers = balancer.on_epoch_end(epoch, unimodal_scores(ehr, cxr), {})
    assert multipliers == pytest.approx({"ehr": 0.8 / 0.7, "cxr": 1.0, "shared": 1.0})
    assert balancer.log_stats() == {"score_ehr": 0.8, "score_cxr": 0.5}


def test_mslr_d_scales_each_modality_starting_rate():
    balancer = build_balancer({"name": "mslr_d", "metric": "auprc", "window": 2,
                               "unimodal_multipliers": {"ehr": 2.0, "cxr": 0.5}}, ToyModel())
    assert balancer.multipliers == {"ehr": 2.0, "cxr": 0.5, "shared": 1.0}     # epoch 0: lr_m0
    for epoch, (ehr, cxr) in enumerate([(0.2, 0.4), (0.4, 0.4), (0.6, 0.2)]):
        multipliers = balancer.on_epoch_end(epoch, unimodal_scores(ehr, cxr, "auprc"), {})
    # window 2: ehr 0.6 / mean(0.4, 0.6) = 1.2, cxr 0.2 / mean(0.4, 0.2) = 2/3
    assert multipliers == pytest.approx({"ehr": 2.0 * 1.2, "cxr": 0.5 * 2 / 3, "shared": 1.0})


def test_mslr_k_keeps_each_modality_rate_whatever_the_scores():
    balancer = build_balancer({"name": "mslr_k", "unimodal_multipliers": {"ehr": 3.0, "cxr": 0.25}}, ToyModel())
    expected = {"ehr": 3.0, "cxr": 0.25, "shared": 1.0}
    assert balancer.multipliers == expected                                     # epoch 0 already
    for epoch, (ehr, cxr) in enumerate([(0.6, 0.5), (0.9, 0.4), (0.5, 0.9)]):
        assert balancer.on_epoch_end(epoch, unimodal_scores(ehr, cxr), {}) == expected
    partial = build_balancer({"name": "mslr_k", "unimodal_multipliers": {"cxr": 2.0}}, ToyModel())
    assert partial.multipliers == {"ehr": 1.0, "cxr": 2.0, "shared": 1.0}      # an unnamed modality: global rate


def test_mslr_s_moves_linearly_from_the_unimodal_rate_to_the_global_one():
    assert smooth_multiplier(3.0, 0, 4) == 3.0 and smooth_multiplier(3.0, 4, 4) == 1.0
    balancer = build_balancer({"name": "mslr_s", "smooth_epochs": 4,
                               "unimodal_multipliers": {"ehr": 3.0, "cxr": 0.2}}, ToyModel())
    seen = [dict(balancer.multipliers)]
    for epoch in range(6):
        seen.append(balancer.on_epoch_end(epoch, unimodal_scores(0.6, 0.5), {}))
    # epoch e runs at k + (1 - k) * min(1, e / 4): ehr 3, 2.5, 2, 1.5, 1, 1, 1; cxr 0.2, 0.4, 0.6, 0.8, 1, ...
    assert [m["ehr"] for m in seen] == pytest.approx([3.0, 2.5, 2.0, 1.5, 1.0, 1.0, 1.0])
    assert [m["cxr"] for m in seen] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])
    assert {m["shared"] for m in seen} == {1.0}


@pytest.mark.parametrize(("settings", "message"), [
    ({"name": "mslr_k", "unimodal_multipliers": {"image": 2.0}}, "unimodal_multipliers: unknown modality image"),
    ({"name": "mslr_s", "unimodal_multipliers": {"ehr": 0.0}}, r"unimodal_multipliers.ehr=0.0: expected a positive"),
    ({"name": "mslr_s", "smooth_epochs": 0}, "smooth_epochs=0: expected an integer >= 1"),
    ({"name": "mslr_d", "metric": "accuracy"}, "metric='accuracy': expected one of auroc, auprc"),
    ({"name": "mslr_d", "window": 0}, "window=0: expected an integer >= 1"),
    ({"name": "mslr_d", "strategy": "keep"}, "unknown settings: strategy"),
])
def test_mslr_rejects_bad_settings_in_one_line(settings, message):
    with pytest.raises((ValueError, PipelineInputError), match=message) as err:
        build_balancer(settings, ToyModel())
    assert "\n" not in str(err.value)


def test_mses_patience_by_hand():
    assert patience_step(0.7, None, 0) == (0.7, 0)                     # the first defined score is the best
    assert patience_step(0.7, 0.7, 1) == (0.7, 2)                      # equal is no improvement
    assert patience_step(math.nan, 0.7, 1) == (0.7, 1)                 # undefined: neither
    balancer = build_balancer({"name": "mses", "patience": 2}, ToyModel())
    ehr = [0.6, 0.7, 0.69, 0.7, 0.9, 0.95]                             # best at epoch 1; no improvement at 2, 3
    cxr = [0.5, math.nan, 0.55, math.nan, 0.56, 0.54]                  # keeps improving; NaNs do not count
    seen = []
    for epoch, scores in enumerate(zip(ehr, cxr, strict=True)):
        seen.append(balancer.on_epoch_end(epoch, unimodal_scores(*scores), {}))
    assert [m["ehr"] for m in seen] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # stopped after epoch 3, for good
    assert [m["cxr"] for m in seen] == [1.0] * 6 and {m["shared"] for m in seen} == {1.0}
    assert balancer.stopped_epoch == {"ehr": 3, "cxr": None}
    assert balancer.log_stats() == {"best_ehr": 0.7, "waited_ehr": 2, "stopped_ehr": 1,
                                    "best_cxr": 0.56, "waited_cxr": 1, "stopped_cxr": 0}


def stop_ehr(model, patience: int = 1, **settings):
    balancer = build_balancer({"name": "mses", "patience": patience, **settings}, model)
    for epoch, ehr in enumerate([0.7, 0.6]):
        balancer.on_epoch_end(epoch, unimodal_scores(ehr, 0.5 + 0.1 * epoch), {})
    assert balancer.multipliers == {"ehr": 0.0, "cxr": 1.0, "shared": 1.0}
    return balancer


def test_mses_stopped_group_does_not_move_under_the_optimizer():
    from training.schedule import apply_learning_rates, group_learning_rates

    torch.manual_seed(0)
    model = ToyModel()
    balancer = stop_ehr(model)
    optimizer = torch.optim.AdamW([{"name": g, "params": ps} for g, ps in model.modality_parameters().items()],
                                  lr=0.1, weight_decay=0.1)
    before = {g: [p.detach().clone() for p in ps] for g, ps in model.modality_parameters().items()}
    for epoch in (2, 3):
        apply_learning_rates(optimizer, group_learning_rates(0.1, balancer.multipliers))
        run_hooks(balancer, model, toy_batch(n=16), epoch)
        assert all(p.grad is None for p in model.modality_parameters()["ehr"])  # not clipped, no Adam moments
        optimizer.step()
    after = model.modality_parameters()
    for group, moved in (("ehr", False), ("cxr", True), ("shared", True)):
        same = all(torch.equal(a, b) for a, b in zip(after[group], before[group], strict=True))
        assert same != moved, group


def test_mses_under_shared_placement_keeps_training_the_stopped_head():
    model = ToyModel()
    balancer = stop_ehr(model, unimodal_heads_in="shared")
    run_hooks(balancer, model, toy_batch(n=16), 2)
    assert model.encoders["ehr"].weight.grad is None            # the encoder's group is stopped
    assert model.heads["ehr"].weight.grad is not None           # the head sits in `shared`, still trained


def with_batch_norm(model):
    for m in ("ehr", "cxr"):
        model.encoders[m] = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    return model


def test_mses_freezes_batch_norm_statistics_of_a_stopped_encoder_also_after_resume():
    torch.manual_seed(0)
    model = with_batch_norm(ToyModel())
    balancer = stop_ehr(model)
    running = {m: model.encoders[m][1].running_mean.clone() for m in ("ehr", "cxr")}
    run_hooks(balancer, model, toy_batch(n=16, seed=1), 2)     # train-mode forward
    assert torch.equal(model.encoders["ehr"][1].running_mean, running["ehr"])
    assert not torch.equal(model.encoders["cxr"][1].running_mean, running["cxr"])
    # resume: a fresh model (default momentum) and a fresh balancer loaded from the checkpoint
    state, weights = balancer.state_dict(), model.state_dict()
    resumed_model = with_batch_norm(ToyModel())
    resumed_model.load_state_dict(weights)
    resumed = build_balancer({"name": "mses", "patience": 1}, resumed_model)
    resumed.load_state_dict(state)
    assert resumed.multipliers["ehr"] == 0.0 and resumed.stopped_epoch == {"ehr": 1, "cxr": None}
    frozen = resumed_model.encoders["ehr"][1].running_mean.clone()
    run_hooks(resumed, resumed_model, toy_batch(n=16, seed=2), 3)
    assert torch.equal(resumed_model.encoders["ehr"][1].running_mean, frozen)
    assert resumed_model.encoders["ehr"][0].weight.grad is None


def test_gradient_blending_weights_by_hand():
    start = {"val": {"ehr": 1.0, "cxr": 1.0, "fused": 1.0}, "train": {"ehr": 1.0, "cxr": 1.0, "fused": 1.0}}
    end = {"val": {"ehr": 0.8, "cxr": 0.9, "fused": 0.6}, "train": {"ehr": 0.6, "cxr": 0.8, "fused": 0.2}}
    # G = 0.2, 0.1, 0.4 ; O = gap growth = 0.2, 0.1, 0.4 ; |G|/O^2 = 5, 10, 2.5
    weights = blending_weights(start, end)
    assert weights == pytest.approx({"ehr": 5 / 17.5, "cxr": 10 / 17.5, "fused": 2.5 / 17.5})
    balancer = build_balancer({"name": "gradient_blending", "super_epoch": 2}, ToyModel())
    for epoch, snapshot in enumerate([start, start, end]):
        val = {"all": {h: {"loss": v} for h, v in snapshot["val"].items()}}
        balancer.on_epoch_end(epoch, val, {"loss": snapshot["train"]})
    assert balancer.head_weights() == pytest.approx(weights)


def test_agm_shapley_and_coefficient_by_hand():
    full, no_ehr, no_cxr, neither = (torch.tensor([v]) for v in (3.0, 1.0, 2.0, 0.5))
    phi = shapley_contributions(full, no_ehr, no_cxr, neither)
    assert phi["ehr"].item() == pytest.approx(0.5 * ((3 - 1) + (2 - 0.5)))
    assert phi["cxr"].item() == pytest.approx(0.5 * ((3 - 2) + (1 - 0.5)))
    assert (phi["ehr"] + phi["cxr"]).item() == pytest.approx(3.0 - 0.5)  # efficiency
    # scores (NLL) ehr 0.3, cxr 0.6 -> ratio_ehr = e^0.3; running ehr 0.5, cxr 0.5 -> target 1
    k = agm_coefficients({"ehr": 0.3, "cxr": 0.6}, {"ehr": 0.5, "cxr": 0.5}, alpha=1.0)
    assert k["ehr"] == pytest.approx(math.exp(1 - math.exp(0.3)))
    assert k["cxr"] == pytest.approx(math.exp(1 - math.exp(-0.3)))
    assert k["ehr"] < 1 < k["cxr"]


def test_pmr_prototype_logits_and_loss_term():
    prototypes = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])  # label 0: class 0 at origin, class 1 at (3, 4)
    logits = prototype_logits(torch.tensor([[0.0, 0.0]]), prototypes)
    assert logits.item() == pytest.approx(0.0 - 5.0)  # d(z, P0) - d(z, P1)
    assert weaker_modality(6.0, 3.0) == "cxr" and weaker_modality(3.0, 6.0) == "ehr"

    model = ToyModel()
    balancer = build_balancer({"name": "pmr", "alpha": 2.0}, model)
    batch = toy_batch(n=16)
    balancer.on_epoch_start(0)
    _, plain = balanced_step(balancer, batch)  # epoch 0: no prototypes yet, no extra term
    plain = plain.total
    balancer.on_epoch_end(0, {}, {})
    balancer.on_epoch_start(1)
    _, loss = balanced_step(balancer, batch)
    total, per_head = loss.total, loss.per_head
    assert set(loss.terms) == {"prototype"}
    base = sum(per_head.values())
    torch.testing.assert_close(plain, base)
    embeddings = model.embed(batch)
    logits = {m: prototype_logits(embeddings[m], balancer.prototypes[m]) for m in ("ehr", "cxr")}
    s = {m: torch.where(batch["labels"] > 0.5, torch.sigmoid(logits[m]), 1 - torch.sigmoid(logits[m])).mean(1).sum().item()
         for m in ("ehr", "cxr")}
    weak = weaker_modality(s["ehr"], s["cxr"])
    expected = base + 2.0 * torch.nn.functional.binary_cross_entropy_with_logits(logits[weak], batch["labels"])
    torch.testing.assert_close(total, expected)


def test_mmpareto_weights_in_both_cases():
    aligned = pareto_gradient(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(aligned[0], torch.tensor([2.0, 1.0]))  # 2 * (0.5, 0.5) weights = plain sum
    assert not aligned[2]
    g_f, g_u = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0])   # cos < 0: conflict
    w1, w2 = min_norm_weights(g_f, g_u)
    # argmin ||w g_f + (1-w) g_u||: w = (g_u - g_f).g_u / ||g_f - g_u||^2 = (2 + 4) / (4 + 4) = 0.75
    assert (w1, w2) == pytest.approx((0.75, 0.25))
    combined, cosine, conflicting = pareto_gradient(g_f, g_u, gamma=1.5)
    mgda = 2 * 0.75 * g_f + 2 * 0.25 * g_u                                   # (1.0, 1.0), norm sqrt(2)
    summed = (g_f + g_u).norm()                                               # (0, 2), norm 2 > sqrt(2)
    torch.testing.assert_close(combined, 1.5 * mgda * summed / mgda.norm())
    assert conflicting and cosine < 0


def run_hooks(balancer, model, batch, epoch):
    balancer.on_epoch_start(epoch)
    step, loss = balanced_step(balancer, batch)
    total = loss.total
    balancer.after_backward(step)
    metrics = {s: {h: {"auroc": 0.6 + 0.1 * (h == "fused") + 0.01 * epoch, "auprc": 0.5, "loss": 0.6 - 0.01 * epoch}
                   for h in ("ehr", "cxr", "fused")} for s in ("all", "paired")}
    balancer.on_epoch_end(epoch, metrics, {"loss": {h: 0.5 for h in ("ehr", "cxr", "fused")}})
    return total


@pytest.mark.parametrize("name", list_balancers())
def test_state_dict_round_trip(name):
    torch.manual_seed(0)
    model = ToyModel()
    balancer = build_balancer({"name": name}, model, seed=3)
    batch = toy_batch(n=16)
    for epoch in range(3):
        total = run_hooks(balancer, model, batch, epoch)
        assert torch.isfinite(total)
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    state = balancer.state_dict()
    clone = build_balancer({"name": name}, model, seed=3)
    clone.load_state_dict(state)
    assert clone.multipliers == balancer.multipliers
    assert clone.log_stats() == balancer.log_stats()
    assert set(clone.multipliers) == {"ehr", "cxr", "shared"}
    restored = clone.state_dict()
    assert restored.keys() == state.keys()
    for key in state:
        assert repr(restored[key]) == repr(state[key]), key
    # continuing from the clone takes the same decisions as continuing the original
    torch.manual_seed(1)
    run_hooks(balancer, model, batch, 3)
    torch.manual_seed(1)
    run_hooks(clone, model, batch, 3)
    assert clone.multipliers == balancer.multipliers
