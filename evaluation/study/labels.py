"""Readers' names for a study's methods: "MSLR-K · joint (concatenation)" rather than "mslr_k · joint".

The study keeps its code labels (`grids.method_label`) as keys: summary.json, `study choose`
and the cell names use them, and they must not change when wording does. Reports show these
names instead, built from a method's overrides, so a clinician reading a table meets the
names the papers use and a sensitivity row says which number is tau and which is mu.
tests/test_study_labels.py checks that every registered balancer and fusion method has a name here.
"""

from __future__ import annotations

from collections.abc import Iterable

from evaluation.study.grids import override_values

BALANCING_NAMES = {
    "none": "no balancing",
    "miles": "MILES",
    "agm": "AGM",
    "gradient_blending": "Gradient Blending",
    "mmpareto": "MMPareto",
    "mses": "MSES",
    "mslr_d": "MSLR-D",
    "mslr_k": "MSLR-K",
    "mslr_s": "MSLR-S",
    "ogm": "OGM",
    "ogm_ge": "OGM-GE",
    "pmr": "PMR",
}
FUSION_NAMES = {
    "joint": "joint (concatenation)",
    "gated": "gated (GMU)",
    "late": "late (mean of logits)",
    "medfuse": "MedFuse",
    "cross_attention": "cross-attention",
}
MODALITY_NAMES = {"ehr": "EHR", "cxr": "chest X-ray"}
SCALE_NAMES = {"raw": "raw metric", "chance_corrected": "chance-corrected metric"}
# Other overrides: a short name, then the value as written (`balancing.tau=0.1` -> "tau 0.1").
SETTING_NAMES = {
    "balancing.tau": "tau",
    "balancing.mu": "mu",
    "train.lr": "learning rate",
    "data.synthetic.imbalance": "imbalance",
    "model.unimodal_heads": "unimodal heads",
}


def _setting(key: str, value: str) -> str:
    if key == "balancing.scale":
        return SCALE_NAMES.get(value, f"scale {value}")
    return f"{SETTING_NAMES.get(key, key.rsplit('.', 1)[-1])} {value}"


def display_label(overrides: Iterable[str]) -> str:
    """`["balancing=miles", "balancing.tau=0.05"]` -> "MILES · tau 0.05";
    `["regime=unimodal", "regime.modality=cxr"]` -> "chest X-ray encoder alone"."""
    values = override_values(list(overrides))
    parts = []
    if values.pop("regime", None) == "unimodal":
        modality = values.pop("regime.modality", "ehr")
        parts.append(f"{MODALITY_NAMES.get(modality, modality)} encoder alone")
    if "balancing" in values:
        balancing = values.pop("balancing")
        parts.append(BALANCING_NAMES.get(balancing, balancing))
    if "fusion" in values:
        fusion = values.pop("fusion")
        parts.append(FUSION_NAMES.get(fusion, fusion))
    parts += [_setting(key, value) for key, value in values.items()]
    return " · ".join(parts)


def method_display(method: dict) -> str:
    """A summary.json method entry's name for readers (its code label where it has no overrides)."""
    overrides = method.get("overrides")
    return display_label(overrides) if overrides else str(method["method"])
