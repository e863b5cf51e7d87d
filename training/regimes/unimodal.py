"""`unimodal`: one encoder and its head trained alone (`regime=unimodal regime.modality=cxr|ehr`).

The greedy-learning reference (Wu et al., ICML 2022; reference/balancing.md): the same
encoder (model.<modality>), data budget and schedule as the multi-head model, but nothing
else competing for the gradient; also the teachers of MIND. Our choices:
- Training stays: every training stay that has the modality. EHR: all stays (`partial`);
  CXR: the stays with a cached image (`paired`). Validation uses the same rule.
- No balancer: with one modality there is nothing to balance, whatever `balancing` says
  (logged); the model's one group trains at the global rate.
- Early stopping and the best checkpoint follow the one head's validation metric.
- Predictions: every val/test stay (partial set), in the same contract, with the one head's
  column (p_<modality>_<label>); the CXR head is null where there is no image.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from data_prep.errors import PipelineInputError
from models.names import IMAGE_HEAD, MODALITIES
from training.regimes.base import Regime, register_regime

log = logging.getLogger(__name__)


@register_regime("unimodal")
class Unimodal(Regime):
    def __init__(self, *args: Any, modality: str = "ehr", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if modality not in MODALITIES:
            raise PipelineInputError(f"regime.modality={modality!r}: expected one of {', '.join(MODALITIES)}")
        self.modality = modality

    def build_model(self, num_labels: int, ehr_features: int, channels_last: bool) -> nn.Module:
        import models

        return models.build_unimodal(self.cfg, self.modality, num_labels, ehr_features=ehr_features,
                                     channels_last=channels_last and self.modality == IMAGE_HEAD)

    def dataset_setting(self) -> str:
        return "paired" if self.modality == IMAGE_HEAD else "partial"

    def balancing(self) -> dict[str, Any]:
        configured = super().balancing()
        if configured.get("name") != "none":
            log.info("regime=unimodal: balancing.name=%s does not apply to a one-modality model; "
                     "training at the global rate", configured.get("name"))
        return {"name": "none"}

    @property
    def monitored_head(self) -> str:
        return self.modality
