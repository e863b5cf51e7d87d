"""`distill`: MIND's objective, the supervised multi-head loss plus distillation from teacher ensembles.

    total = supervised (masked 3-head BCE, the balancer's head weights)
            + weight * (KD_ehr + KD_cxr [+ KD_fused])

For a head h with teacher ensemble E (the EHR head: the EHR members; the CXR head: the CXR
members) and temperature T, on the rows where the ensemble is defined (the CXR term: stays
with an image):

    target  q = mean_m sigmoid(z_m / T)        (ensemble=mean_probability, the default)
              = sigmoid(mean_m z_m / T)        (ensemble=mean_logit)
    KD_h    = T^2 * mean over rows and labels of BCE(sigmoid(s_h / T), q)

Per label a binary soft-target cross-entropy (the tasks are binary and multilabel, so each
label is its own two-class distribution); T^2 keeps the term's gradient on the scale of the
supervised loss's as T changes (Hinton et al., 2015). `fused_teacher=ensembles` adds the same
term on the fused head with the mean of the targets of the ensembles present for the stay
(EHR alone without an image); `none` (the default) leaves the fused head to the labels.
Choices beyond the MIND abstract are ours: docs/methods/distillation.md.

The teacher logits reach the loss by stay: a batch carries its stay_id, looked up in the
table the regime loaded at the start of the run (training/teacher_logits.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from data_prep.errors import PipelineInputError
from models.names import EHR_HEAD, FUSED_HEAD, IMAGE_HEAD, MODALITIES
from training.objectives.base import Loss, Step, register_objective
from training.objectives.supervised import Supervised
from training.teacher_logits import TeacherLogits


def _mean_probability(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.sigmoid(logits / temperature).mean(dim=1)


def _mean_logit(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.sigmoid(logits.mean(dim=1) / temperature)


ENSEMBLE_RULES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "mean_probability": _mean_probability, "mean_logit": _mean_logit}
"""How an ensemble's member logits [rows, members, labels] become soft targets [rows, labels]."""
FUSED_TEACHERS = ("none", "ensembles")


def soft_target_bce(student_logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """T^2 * mean over the selected rows and all labels of BCE(sigmoid(s/T), target); exactly 0
    (with a graph) when no row is selected. Unselected rows contribute neither value nor
    gradient, whatever their target holds (NaN for a missing image)."""
    safe_target = torch.where(rows[:, None], target, target.new_full((), 0.5))
    per_element = F.binary_cross_entropy_with_logits(student_logits.float() / temperature, safe_target.float(),
                                                     reduction="none")
    selected = torch.where(rows[:, None], per_element, per_element.new_zeros(()))
    return temperature ** 2 * selected.sum() / (rows.sum() * per_element.shape[1]).clamp(min=1)


@register_objective("distill")
class Distill(Supervised):
    def __init__(self, model: torch.nn.Module, teachers: TeacherLogits | None = None, temperature: float = 2.0,
                 weight: float = 1.0, ensemble: str = "mean_probability", fused_teacher: str = "none") -> None:
        super().__init__(model)
        if teachers is None:
            raise PipelineInputError("regime.objective=distill: no teacher logits (the distill regime loads "
                                     "them; run `dvc repro teachers@<task>`)")
        if not float(temperature) > 0:
            raise PipelineInputError(f"regime.temperature={temperature}: expected a number > 0")
        if not float(weight) >= 0:
            raise PipelineInputError(f"regime.weight={weight}: expected a number >= 0")
        if ensemble not in ENSEMBLE_RULES:
            raise PipelineInputError(f"regime.ensemble={ensemble!r}: expected one of {', '.join(ENSEMBLE_RULES)}")
        if fused_teacher not in FUSED_TEACHERS:
            raise PipelineInputError(f"regime.fused_teacher={fused_teacher!r}: expected one of "
                                     f"{', '.join(FUSED_TEACHERS)}")
        self.teachers, self.temperature, self.weight = teachers, float(temperature), float(weight)
        self.rule, self.fused_teacher = ENSEMBLE_RULES[ensemble], fused_teacher
        self._ensembles = {m: torch.from_numpy(teachers.ensemble(m)) for m in MODALITIES}

    def targets(self, stay_ids: torch.Tensor | np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """Each modality's ensemble target [rows, labels] for these stays (NaN where undefined)."""
        rows = torch.from_numpy(self.teachers.rows(np.asarray(stay_ids)))
        return {m: self.rule(ensemble[rows].to(device), self.temperature) for m, ensemble in self._ensembles.items()}

    def distillation_terms(self, step: Step) -> dict[str, torch.Tensor]:
        outputs, has_cxr = step.outputs, step.batch["has_cxr"].bool()
        device = next(iter(outputs.values())).device
        targets = self.targets(step.batch["stay_id"], device)
        defined = {m: torch.isfinite(t).all(dim=1) for m, t in targets.items()}
        defined[IMAGE_HEAD] = defined[IMAGE_HEAD] & has_cxr
        terms = {f"distill_{m}": soft_target_bce(outputs[m], targets[m], defined[m], self.temperature)
                 for m in MODALITIES if m in outputs}
        if self.fused_teacher == "ensembles" and FUSED_HEAD in outputs:
            image = defined[IMAGE_HEAD][:, None]
            both = (targets[EHR_HEAD] + torch.nan_to_num(targets[IMAGE_HEAD])) / 2
            fused_target = torch.where(image, both, targets[EHR_HEAD])
            terms[f"distill_{FUSED_HEAD}"] = soft_target_bce(outputs[FUSED_HEAD], fused_target,
                                                             defined[EHR_HEAD], self.temperature)
        return terms

    def loss(self, step: Step, head_weights: Mapping[str, float]) -> Loss:
        loss = super().loss(step, head_weights)
        if self.weight == 0:
            return loss
        for name, value in self.distillation_terms(step).items():
            loss = loss.plus(name, self.weight * value)
        return loss
