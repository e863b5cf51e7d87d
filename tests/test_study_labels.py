"""Readers' names in study reports: every registered method has one, and settings say what they are."""

from __future__ import annotations

import pytest

from evaluation.study.grids import GRIDS
from evaluation.study.labels import BALANCING_NAMES, FUSION_NAMES, display_label, method_display
from evaluation.study.render import methods_table
from models.fusion import list_fusions
from training.balancers import list_balancers


def test_every_registered_balancer_and_fusion_has_a_readers_name() -> None:
    assert set(list_balancers()) <= set(BALANCING_NAMES)
    assert set(list_fusions()) <= set(FUSION_NAMES)


@pytest.mark.parametrize(("overrides", "expected"), [
    (["balancing=mslr_k", "fusion=joint"], "MSLR-K · joint (concatenation)"),
    (["balancing=none"], "no balancing"),
    (["regime=unimodal", "regime.modality=cxr"], "chest X-ray encoder alone"),
    (["regime=unimodal", "regime.modality=ehr", "train.lr=3.0e-3"], "EHR encoder alone · learning rate 3.0e-3"),
    (["balancing=miles", "balancing.tau=0.05", "balancing.mu=0.25", "balancing.scale=chance_corrected"],
     "MILES · tau 0.05 · mu 0.25 · chance-corrected metric"),
])
def test_display_label_names_methods_and_settings(overrides: list[str], expected: str) -> None:
    assert display_label(overrides) == expected


def test_every_grid_method_gets_a_distinct_readers_name() -> None:
    """Two methods of one grid must never print the same row name."""
    for grid in GRIDS.values():
        methods = grid.methods()
        names = {display_label(method) for method in methods}
        assert len(names) == len(methods), grid.name
        assert all("_" not in name for name in names), (grid.name, names)


def test_report_table_shows_readers_names_not_code_labels() -> None:
    entry = {"mean": 0.8, "low": 0.7, "high": 0.9, "n_seeds": 3}
    method = {"method": "ogm_ge · gated", "overrides": ["balancing=ogm_ge", "fusion=gated"], "seeds": [1, 2, 3],
              "reference": "none · gated", "heads": {"fused": {"auroc": entry, "auprc": entry}},
              "cost_ratio": 1.2, "lr_trace": {}}
    table = methods_table("in_hospital_mortality", {"n_stays": 10, "n_patients": 10, "methods": [method]})
    assert table.rows[0][0] == "OGM-GE · gated (GMU)" == method_display(method)
