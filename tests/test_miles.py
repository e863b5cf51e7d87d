"""MILES's learning-rate decisions on hand-computed metric sequences (reference/miles.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from training_fakes import ToyModel

from training.balancers import build_balancer
from training.balancers.miles import conditional_utilization, miles_decision
from training.metrics import validation_metrics

ONES = {"ehr": 1.0, "cxr": 1.0, "shared": 1.0}


def test_conditional_utilization_by_hand():
    # M_fused 0.8, M_ehr 0.6, M_cxr 0.7: u_ehr = (0.8-0.7)/0.8 = 0.125, u_cxr = (0.8-0.6)/0.8 = 0.25
    u_ehr, u_cxr = conditional_utilization(0.8, 0.6, 0.7)
    assert u_ehr == pytest.approx(0.125) and u_cxr == pytest.approx(0.25)


@pytest.mark.parametrize(("metrics", "action", "multipliers"), [
    # delta = |0.125 - 0.25| = 0.125 <= tau 0.2: balanced, both at alpha
    ((0.8, 0.6, 0.7), "reset_balanced", {"ehr": 1.0, "cxr": 1.0}),
    # fused 0.5 worse than both (ehr 0.7, cxr 0.8): u_ehr = -0.6, u_cxr = -0.4, delta 0.2 -> tau 0.1 needed
    ((0.5, 0.7, 0.8), "reset_fused_worse", {"ehr": 1.0, "cxr": 1.0}),
    # EHR alone beats fused: u_ehr = (0.8-0.5)/0.8 = 0.375 > 0, u_cxr = (0.8-0.9)/0.8 = -0.125 < 0
    ((0.8, 0.9, 0.5), "slow_ehr", {"ehr": 0.5, "cxr": 1.0}),
    # CXR alone beats fused: u_ehr = -0.125, u_cxr = 0.375
    ((0.8, 0.5, 0.9), "slow_cxr", {"ehr": 1.0, "cxr": 0.5}),
    # both positive, u_ehr = 0.05 < u_cxr = 0.45 (CXR stronger): slow CXR
    ((0.8, 0.44, 0.76), "slow_cxr", {"ehr": 1.0, "cxr": 0.5}),
    # both positive, u_ehr = 0.45 > u_cxr = 0.05 (EHR stronger): slow EHR
    ((0.8, 0.76, 0.44), "slow_ehr", {"ehr": 0.5, "cxr": 1.0}),
])
def test_each_branch(metrics, action, multipliers):
    tau = 0.1 if action == "reset_fused_worse" else 0.2
    decision = miles_decision(*metrics, tau=tau, mu=0.5, previous=ONES)
    assert decision.action == action
    assert decision.multipliers == {**multipliers, "shared": 1.0}


def test_balanced_threshold_is_inclusive():
    # u_ehr = 0.25, u_cxr = 0.5 -> delta exactly 0.25
    assert miles_decision(0.8, 0.4, 0.6, tau=0.25, mu=0.5, previous=ONES).action == "reset_balanced"
    assert miles_decision(0.8, 0.4, 0.6, tau=0.24, mu=0.5, previous=ONES).action == "slow_cxr"


def val_metrics(fused, ehr, cxr, metric="auroc"):
    heads = {"fused": fused, "ehr": ehr, "cxr": cxr}
    paired = {h: {"auroc": v if metric == "auroc" else 0.5, "auprc": v if metric == "auprc" else 0.5}
              for h, v in heads.items()}
    return {"paired": paired, "all": {h: {"auroc": 0.0, "auprc": 0.0} for h in heads}}


def miles(**settings):
    return build_balancer({"name": "miles", "tau": 0.2, "mu": 0.5, **settings}, ToyModel())


def test_reduction_never_compounds_over_consecutive_epochs():
    balancer = miles()
    for epoch in range(3):  # EHR dominates three epochs in a row
        multipliers = balancer.on_epoch_end(epoch, val_metrics(0.8, 0.9, 0.5), {})
        assert multipliers == {"ehr": 0.5, "cxr": 1.0, "shared": 1.0}  # mu * alpha, not mu^k * alpha
    assert balancer.log_stats()["action"] == "slow_ehr"


def test_reset_other_default_and_off():
    default = miles()
    default.on_epoch_end(0, val_metrics(0.8, 0.9, 0.5), {})   # slow EHR
    assert default.on_epoch_end(1, val_metrics(0.8, 0.5, 0.9), {}) == {"ehr": 1.0, "cxr": 0.5, "shared": 1.0}
    keep = miles(reset_other=False)
    keep.on_epoch_end(0, val_metrics(0.8, 0.9, 0.5), {})       # slow EHR
    assert keep.on_epoch_end(1, val_metrics(0.8, 0.5, 0.9), {}) == {"ehr": 0.5, "cxr": 0.5, "shared": 1.0}
    assert keep.on_epoch_end(2, val_metrics(0.8, 0.6, 0.7), {}) == {"ehr": 1.0, "cxr": 1.0, "shared": 1.0}


def test_metric_setting_selects_auprc():
    balancer = miles(metric="auprc")
    balancer.on_epoch_end(0, val_metrics(0.8, 0.9, 0.5, metric="auprc"), {})
    assert balancer.multipliers["ehr"] == 0.5
    assert balancer.log_stats()["u_ehr"] == pytest.approx(0.375)
    assert balancer.log_stats()["u_cxr"] == pytest.approx(-0.125)
    assert balancer.log_stats()["delta"] == pytest.approx(0.5)


def test_undefined_metric_resets():
    balancer = miles()
    balancer.on_epoch_end(0, val_metrics(0.8, 0.9, 0.5), {})
    assert balancer.on_epoch_end(1, val_metrics(math.nan, 0.9, 0.5), {}) == {"ehr": 1.0, "cxr": 1.0, "shared": 1.0}
    assert balancer.log_stats()["action"] == "undefined"


def test_unimodal_heads_placement_moves_heads_between_groups():
    model = ToyModel()
    encoder = model.modality_parameters(miles(unimodal_heads_in="encoder").unimodal_heads_in)
    shared = model.modality_parameters(miles(unimodal_heads_in="shared").unimodal_heads_in)
    head = model.heads["ehr"].weight
    assert any(p is head for p in encoder["ehr"]) and not any(p is head for p in encoder["shared"])
    assert any(p is head for p in shared["shared"]) and not any(p is head for p in shared["ehr"])


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="tau"):
        miles(tau=1.5)
    with pytest.raises(ValueError, match="metric"):
        miles(metric="accuracy")


# ---- metric scale (`scale: raw | chance_corrected`) ------------------------------------------
def scaled_metrics(auroc, auprc, prevalence):
    heads = {h: {"auroc": auroc[k], "auprc": auprc[k], "prevalence": prevalence, "loss": 0.5}
             for k, h in enumerate(("fused", "ehr", "cxr"))}
    return {"paired": heads, "all": heads}


def test_raw_scale_is_the_paper_rule_and_needs_a_large_auroc_gap():
    # AUROC fused 0.8, ehr 0.75, cxr 0.65: raw gap = |0.75 - 0.65| / 0.8 = 0.125 <= 0.2, balanced
    balancer = miles()
    balancer.on_epoch_end(0, scaled_metrics((0.8, 0.75, 0.65), (0.5, 0.5, 0.5), 0.3), {})
    assert balancer.log_stats()["delta"] == pytest.approx(0.1 / 0.8)
    assert balancer.log_stats()["action"] == "reset_balanced"


def test_chance_corrected_auroc_is_two_auroc_minus_one():
    # same heads: M' = 2M - 1 = 0.6, 0.5, 0.3; u_ehr = (0.6 - 0.3) / 0.6 = 0.5, u_cxr = (0.6 - 0.5) / 0.6 = 1/6
    balancer = miles(scale="chance_corrected")
    multipliers = balancer.on_epoch_end(0, scaled_metrics((0.8, 0.75, 0.65), (0.5, 0.5, 0.5), 0.3), {})
    stats = balancer.log_stats()
    assert stats["u_ehr"] == pytest.approx(0.5) and stats["u_cxr"] == pytest.approx(1 / 6)
    assert stats["delta"] == pytest.approx(1 / 3)          # = 2 * 0.1 / (2 * 0.8 - 1)
    assert stats["action"] == "slow_ehr" and multipliers == {"ehr": 0.5, "cxr": 1.0, "shared": 1.0}


def test_chance_corrected_auprc_is_the_gain_over_prevalence():
    # prevalence 0.2: M' = (M - 0.2) / 0.8 -> fused 0.6 -> 0.5, ehr 0.5 -> 0.375, cxr 0.3 -> 0.125
    # u_ehr = (0.5 - 0.125) / 0.5 = 0.75, u_cxr = (0.5 - 0.375) / 0.5 = 0.25
    balancer = miles(metric="auprc", scale="chance_corrected")
    balancer.on_epoch_end(0, scaled_metrics((0.9, 0.9, 0.9), (0.6, 0.5, 0.3), 0.2), {})
    stats = balancer.log_stats()
    assert stats["u_ehr"] == pytest.approx(0.75) and stats["u_cxr"] == pytest.approx(0.25)
    assert stats["action"] == "slow_ehr"
    raw = miles(metric="auprc")           # raw: u_ehr = 0.3 / 0.6 = 0.5, u_cxr = 0.1 / 0.6
    raw.on_epoch_end(0, scaled_metrics((0.9, 0.9, 0.9), (0.6, 0.5, 0.3), 0.2), {})
    assert raw.log_stats()["u_ehr"] == pytest.approx(0.5) and raw.log_stats()["u_cxr"] == pytest.approx(1 / 6)


def test_chance_corrected_fused_head_at_or_below_chance_is_undefined():
    balancer = miles(scale="chance_corrected")
    balancer.on_epoch_end(0, val_metrics(0.8, 0.9, 0.5), {})  # slow EHR first
    assert balancer.on_epoch_end(1, scaled_metrics((0.5, 0.7, 0.6), (0.5,) * 3, 0.3), {}) == ONES
    assert balancer.log_stats()["action"] == "undefined"
    missing = miles(metric="auprc", scale="chance_corrected")  # no prevalence in the metrics: undefined, not a crash
    assert missing.on_epoch_end(0, val_metrics(0.8, 0.9, 0.5, metric="auprc"), {}) == ONES


def test_invalid_scale_is_rejected_naming_the_setting_and_the_choices():
    with pytest.raises(ValueError, match=r"balancing.scale='zscore': expected one of raw, chance_corrected"):
        miles(scale="zscore")


def test_validation_metrics_report_the_prevalence_of_the_scored_labels():
    # label 0: 1 positive of 4 paired rows; label 1: 2 of 4; label 2 has one class only and is left out
    labels = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 1], [1, 1, 1]], dtype=np.float32)
    has_cxr = np.array([True, True, True, True, False])
    probs = {h: np.full(labels.shape, 0.5, dtype=np.float32) for h in ("ehr", "cxr", "fused")}
    metrics = validation_metrics(labels, probs, has_cxr)
    for head in ("ehr", "cxr", "fused"):
        assert metrics["paired"][head]["prevalence"] == pytest.approx((1 / 4 + 2 / 4) / 2)
        assert metrics["paired"][head]["auprc"] == pytest.approx((1 / 4 + 2 / 4) / 2)  # constant scores: AP = prevalence
    assert metrics["all"]["ehr"]["prevalence"] == pytest.approx((2 / 5 + 3 / 5) / 2)   # all rows for ehr/fused
    assert metrics["all"]["cxr"]["prevalence"] == pytest.approx((1 / 4 + 2 / 4) / 2)   # cxr: imaged rows only
    single_class = validation_metrics(labels[:, 2:], {h: p[:, 2:] for h, p in probs.items()}, has_cxr)
    assert math.isnan(single_class["paired"]["fused"]["prevalence"])
