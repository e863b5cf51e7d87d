"""The `privacy` settings (configs/privacy/), checked before any stage does work."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from data_prep.errors import PipelineInputError
from data_prep.validation import register_check

ACCOUNTANTS = ("rdp", "prv", "gdp")  # Opacus's accountants (opacus.accountants)
DELTA_FRACTION = 0.1  # default delta = DELTA_FRACTION / number of training patients


@dataclass(frozen=True)
class PrivacySettings:
    """DP-SGD at the patient level: reach (target_epsilon, delta) after train.epochs epochs."""

    enabled: bool = False
    target_epsilon: float = 8.0
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "rdp"

    @classmethod
    def from_config(cls, cfg: DictConfig | None) -> PrivacySettings:
        """The `privacy` section of cfg (disabled when there is none), checked."""
        section = OmegaConf.select(cfg, "privacy", default=None) if cfg is not None else None
        if section is None:
            return cls()
        values: dict[str, Any] = OmegaConf.to_container(section, resolve=True)  # type: ignore[assignment]
        check_settings(values)
        return cls(enabled=bool(values.get("enabled", False)),
                   target_epsilon=float(values.get("target_epsilon", 8.0)),
                   delta=None if values.get("delta") is None else float(values["delta"]),
                   max_grad_norm=float(values.get("max_grad_norm", 1.0)),
                   accountant=str(values.get("accountant", "rdp")))

    def resolved_delta(self, n_patients: int) -> float:
        """The delta used: the configured one, or DELTA_FRACTION / n_patients (an order of
        magnitude below the 1/N at which a mechanism may release one patient's data outright)."""
        if self.delta is None:
            return DELTA_FRACTION / max(int(n_patients), 1)
        if self.delta >= 1.0 / max(int(n_patients), 1):
            raise PipelineInputError(f"privacy.delta={self.delta:g}: expected below 1/N = "
                                     f"{1.0 / max(int(n_patients), 1):.3g} (N = {n_patients} training patients)")
        return float(self.delta)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_settings(values: dict[str, Any]) -> None:
    """One line per impossible setting: epsilon <= 0, delta outside (0, 1), a clipping norm <= 0,
    an unknown accountant, audit counts below their minimum."""
    epsilon = values.get("target_epsilon")
    if epsilon is not None and not (_number(epsilon) and epsilon > 0):
        raise PipelineInputError(f"privacy.target_epsilon={epsilon!r}: expected a finite number > 0")
    delta = values.get("delta")
    if delta is not None and not (_number(delta) and 0 < delta < 1):
        raise PipelineInputError(f"privacy.delta={delta!r}: expected a number > 0 and < 1, or null "
                                 f"(= {DELTA_FRACTION:g} / number of training patients)")
    norm = values.get("max_grad_norm")
    if norm is not None and not (_number(norm) and norm > 0):
        raise PipelineInputError(f"privacy.max_grad_norm={norm!r}: expected a finite number > 0")
    accountant = values.get("accountant")
    if accountant is not None and accountant not in ACCOUNTANTS:
        raise PipelineInputError(f"privacy.accountant={accountant!r}: expected one of {', '.join(ACCOUNTANTS)}")
    audit = values.get("audit") or {}
    references = audit.get("reference_models")
    if references is not None and not (isinstance(references, int) and not isinstance(references, bool)
                                       and references >= 0):
        raise PipelineInputError(f"privacy.audit.reference_models={references!r}: expected an integer >= 0 "
                                 "(0: the threshold attack only)")
    epochs = audit.get("reference_epochs")
    if epochs is not None and not (isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1):
        raise PipelineInputError(f"privacy.audit.reference_epochs={epochs!r}: expected an integer >= 1 or null")
    for fpr in audit.get("fpr") or []:
        if not (_number(fpr) and 0 < fpr < 1):
            raise PipelineInputError(f"privacy.audit.fpr: {fpr!r}: expected false-positive rates in (0, 1)")


@register_check("privacy")
def _check_privacy(cfg: DictConfig) -> None:
    section = OmegaConf.select(cfg, "privacy", default=None)
    if isinstance(section, DictConfig):
        check_settings(OmegaConf.to_container(section, resolve=True))  # type: ignore[arg-type]
