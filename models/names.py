"""The names every package shares: modalities, prediction heads and learning-rate groups.

One place, so that the model, the loss, the balancers, the predictions contract and the
report cannot drift apart. Imports go data_prep -> models -> training -> evaluation, and
models is the lowest package that needs these names.
"""

from __future__ import annotations

MODALITIES: tuple[str, ...] = ("ehr", "cxr")
"""The two inputs of a stay: the EHR time series and the chest X-ray."""

FUSED_HEAD = "fused"
HEADS: tuple[str, ...] = (*MODALITIES, FUSED_HEAD)
"""Prediction heads of the multi-head model, in the order of the loss sum and the reports.
A unimodal model has the one head named after its modality."""

SHARED_GROUP = "shared"
PARAMETER_GROUPS: tuple[str, ...] = (*MODALITIES, SHARED_GROUP)
"""Learning-rate groups: each modality's encoder (+ projection, + its head by default) and
the shared part (fusion module + fused head)."""

EHR_HEAD = "ehr"
"""The modality every stay has (an ICU stay always has its time series): what routing falls back to."""

IMAGE_HEAD = "cxr"
"""The head that is undefined for a stay without an image (masked in loss and metrics)."""


ROUTED_HEAD = "routed"
"""Not a head of any model but a prediction written beside the heads (training/predictions.py):
what a deployment uses, the fused head for a stay with both modalities, else the head of the
modality present (MIND's "unimodal heads for unimodal patients", no imputation). Every stay
has its EHR, so routing reads `has_cxr`: fused where there is an image, EHR where not."""
PREDICTED: tuple[str, ...] = (*HEADS, ROUTED_HEAD)
"""Every p_<name>_<label> prefix of the predictions contract, in report order."""


def head_is_defined_without_image(head: str) -> bool:
    """Every head but the image head predicts for a stay without an X-ray."""
    return head != IMAGE_HEAD
