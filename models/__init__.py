"""Models: EHR and CXR encoders, the fusion registry and the multi-head fusion model.

Public API: `build(cfg, num_labels)`, `build_unimodal(cfg, modality, num_labels)`,
`MultiHeadFusionModel`, `UnimodalModel`, the shared names (models.names), the registries' decorators
(`register_fusion`, `register_encoder` for CXR encoders, `register_ehr_encoder`) and
listings, and `masked_multihead_bce` (models.losses).
"""

from __future__ import annotations

import importlib
from typing import Any

# The factory lives in models/factory.py, not models/build.py: a submodule named `build` would
# replace the `build` function as the package's attribute once anything imported it.
# Loaded on first use (PEP 562), so that `from models.names import HEADS` (the evaluation stages)
# does not import torch and torchvision: ~3 s a stage, 5 stages of the default `dvc repro`.
_EXPORTS = {
    "build": "models.factory", "build_unimodal": "models.factory",
    "CXREncoder": "models.cxr_encoders", "list_encoders": "models.cxr_encoders",
    "register_encoder": "models.cxr_encoders",
    "list_ehr_encoders": "models.ehr_encoders", "register_ehr_encoder": "models.ehr_encoders",
    "FusionModule": "models.fusion", "list_fusions": "models.fusion", "register_fusion": "models.fusion",
    "masked_multihead_bce": "models.losses",
    "MultiHeadFusionModel": "models.multihead",
    "HEADS": "models.names", "MODALITIES": "models.names", "PARAMETER_GROUPS": "models.names",
    "UnimodalModel": "models.unimodal",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
