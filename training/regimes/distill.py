"""`distill`: MIND (TMLR 2025) — a smaller multi-head student distilled from unimodal teacher ensembles.

    dvc exp run -S regime=distill                       # teachers once, then the student
    dvc exp run -S regime=distill -S regime.weight=0    # the same student without distillation

The teachers (ensembles of unimodal networks of several sizes, each trained alone on every
training stay with its modality) come from teachers@<task> (training/teachers.py), which
this regime's `uses_teachers` switches on. The student is the multi-head model of DESIGN
section 6 with the sizes of `regime.student` (a model/ section), trained on `train.setting`
stays under any balancer with the `distill` objective (training/objectives/distill.py).
Its unimodal heads serve stays without an image; the routed prediction of the predictions
file (training/predictions.py) is that deployment rule. docs/methods/distillation.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from data_prep import paths
from training.regimes.base import Regime, register_regime
from training.teacher_logits import read_teacher_logits

log = logging.getLogger(__name__)


@register_regime("distill")
class Distill(Regime):
    uses_teachers = True

    def __init__(self, *args: Any, temperature: float = 2.0, weight: float = 1.0,
                 ensemble: str = "mean_probability", fused_teacher: str = "none",
                 student: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.temperature, self.weight = float(temperature), float(weight)
        self.ensemble, self.fused_teacher = ensemble, fused_teacher
        self.student = dict(student) if student is not None else \
            OmegaConf.to_container(self.cfg.model, resolve=True)

    def build_model(self, num_labels: int, ehr_features: int, channels_last: bool) -> nn.Module:
        import models

        student_cfg = OmegaConf.merge(self.cfg, {"model": None})
        student_cfg.model = self.student
        return models.build(student_cfg, num_labels, ehr_features=ehr_features, channels_last=channels_last)

    def input_files(self, task: str) -> list[Path]:
        return [paths.teacher_logits_path(self.cfg, task)] if self.weight > 0 else []

    def objective_settings(self, task: str, train_set: Any) -> str | dict[str, Any]:
        """The distill objective with the teacher logits, refused unless they describe exactly
        this task's training stays and labels; weight 0 is the supervised loss (no teachers read)."""
        name = self.objective if isinstance(self.objective, str) else self.objective.get("name")
        if self.weight == 0:
            log.info("regime.weight=0: the student without distillation (supervised loss only)")
            return "supervised"
        path = paths.teacher_logits_path(self.cfg, task)
        teachers = read_teacher_logits(path, task)
        teachers.check_against(train_set.stay_ids, train_set.labels, train_set.image_rows >= 0,
                               list(train_set.label_names), str(path))
        return {"name": name, "teachers": teachers, "temperature": self.temperature, "weight": self.weight,
                "ensemble": self.ensemble, "fused_teacher": self.fused_teacher}
