"""Evaluate one task's test predictions: every head, both test sets, calibration, subgroups.

Test sets (MedFuse): *paired* = test stays with a chest X-ray, where all three heads are
scored on the same stays; *partial* = all test stays, where the EHR and fused heads are
scored on every stay and the CXR head only on stays with an image (it has no prediction
otherwise). Paired differences therefore exist for fused - EHR on both sets and for
fused - CXR on the paired set only (on the partial set the two heads see different stays).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evaluation.bootstrap import Estimate, PatientResamples, difference, patient_resamples
from evaluation.calibration import Calibration, calibration
from evaluation.inputs import Predictions
from evaluation.metrics import Curves, curves
from evaluation.scoring import HeadScores, score_head
from evaluation.subgroups import SUBGROUPS, level_order
from evaluation.suppression import is_small
from models.names import HEADS, ROUTED_HEAD, head_is_defined_without_image

log = logging.getLogger(__name__)
TEST_SETS = ("test_paired", "test_partial")
DIFFERENCES = {"test_paired": (("fused", "ehr"), ("fused", "cxr")),
               "test_partial": (("fused", "ehr"), (ROUTED_HEAD, "fused"))}
# The routed prediction is the fused head wherever there is an image, so it is scored on the
# partial set only (on the paired set it would repeat the fused head's row).
SET_HEADS_SKIPPED = {"test_paired": (ROUTED_HEAD,), "test_partial": ()}


@dataclass(frozen=True)
class EvalSettings:
    n_bootstrap: int = 1000
    seed: int = 1002
    ci_level: float = 0.95
    min_cell_size: int = 10
    calibration_bins: int = 10
    age_bands: tuple[float, ...] = (18, 40, 65, 80)

    @classmethod
    def from_config(cls, eval_cfg: Mapping[str, Any]) -> EvalSettings:
        """From the `eval` group (a dict or DictConfig); missing keys keep the defaults."""
        defaults = cls()
        def get(key):
            return eval_cfg[key] if key in eval_cfg else getattr(defaults, key)
        return cls(int(get("n_bootstrap")), int(get("seed")), float(get("ci_level")),
                   int(get("min_cell_size")), int(get("calibration_bins")),
                   tuple(float(a) for a in get("age_bands")))


@dataclass
class HeadResult:
    n_stays: int
    n_patients: int
    n_events: int
    summary: dict[str, Estimate]
    per_label: dict[str, dict[str, Estimate]]
    calibration: Calibration


@dataclass
class SetResult:
    name: str
    n_stays: int
    n_patients: int
    n_events: int
    n_bootstrap: int
    heads: dict[str, HeadResult]
    differences: dict[str, dict[str, Estimate]]


@dataclass
class SubgroupRow:
    subgroup: str
    level: str
    n_stays: int
    n_patients: int
    n_events: int
    suppressed: bool
    # head -> AUROC; None: too few patients (suppressed); head absent: not applicable
    auroc: dict[str, Estimate | None] = field(default_factory=dict)


@dataclass
class LabelCounts:
    label: str
    n_stays: int
    positives: int
    prevalence: float


@dataclass
class TaskEvaluation:
    task: str
    labels: list[str]
    settings: EvalSettings
    sets: dict[str, SetResult]
    subgroups: list[SubgroupRow]
    label_counts: dict[str, list[LabelCounts]]  # per test set
    paired_curves: dict[str, Curves]
    heads: tuple[str, ...] = HEADS  # the evaluated model's heads

    @property
    def multilabel(self) -> bool:
        return len(self.labels) > 1


def head_rows(predictions: Predictions, rows: np.ndarray, head: str) -> np.ndarray:
    """Rows (within `rows`) where `head` has a prediction: the CXR head needs an image."""
    if head_is_defined_without_image(head):
        return rows
    return rows & predictions.frame["has_cxr"].to_numpy()


def set_rows(predictions: Predictions, name: str) -> np.ndarray:
    has_cxr = predictions.frame["has_cxr"].to_numpy()
    return has_cxr.copy() if name == "test_paired" else np.ones_like(has_cxr, dtype=bool)


def score_rows(predictions: Predictions, rows: np.ndarray, head: str,
               resamples: PatientResamples) -> HeadScores:
    subjects = predictions.frame["subject_id"].to_numpy()[rows]
    return score_head(predictions.y(rows), predictions.p(head, rows), predictions.labels,
                      resamples.stay_weights(subjects))


def _n_patients(predictions: Predictions, rows: np.ndarray) -> int:
    return int(np.unique(predictions.frame["subject_id"].to_numpy()[rows]).size)


def evaluate_set(predictions: Predictions, name: str, settings: EvalSettings
                 ) -> tuple[SetResult, dict[str, HeadScores]]:
    rows = set_rows(predictions, name)
    subjects = predictions.frame["subject_id"].to_numpy()[rows]
    resamples = patient_resamples(subjects, settings.n_bootstrap, settings.seed)
    scores: dict[str, HeadScores] = {}
    heads: dict[str, HeadResult] = {}
    for head in predictions.heads:
        selected = head_rows(predictions, rows, head)
        if not selected.any() or head in SET_HEADS_SKIPPED[name]:
            continue
        scores[head] = score_rows(predictions, selected, head, resamples)
        heads[head] = HeadResult(
            n_stays=int(selected.sum()), n_patients=_n_patients(predictions, selected),
            n_events=int(predictions.y(selected).sum()),
            summary={m: s.estimate(settings.ci_level) for m, s in scores[head].summary.items()},
            per_label={label: {m: s.estimate(settings.ci_level) for m, s in metrics.items()}
                       for label, metrics in scores[head].per_label.items()},
            calibration=calibration(predictions.y(selected), predictions.p(head, selected),
                                    settings.calibration_bins))
    differences: dict[str, dict[str, Estimate]] = {}
    for a, b in DIFFERENCES[name]:
        if a in scores and b in scores:
            differences[f"{a}_minus_{b}"] = {
                metric: difference(scores[a].summary[metric].point, scores[a].summary[metric].replicates,
                                   scores[b].summary[metric].point, scores[b].summary[metric].replicates,
                                   settings.ci_level)
                for metric in scores[a].summary}
    result = SetResult(name, int(rows.sum()), _n_patients(predictions, rows),
                       int(predictions.y(rows).sum()), settings.n_bootstrap, heads, differences)
    return result, scores


def evaluate_subgroups(predictions: Predictions, demographics: pd.DataFrame | None,
                       settings: EvalSettings) -> list[SubgroupRow]:
    """AUROC per head in each subgroup level of the partial test set, resamples shared."""
    stays = predictions.frame[["subject_id", "stay_id", "has_cxr"]]
    if demographics is not None:
        stays = stays.merge(demographics.drop_duplicates("stay_id"), on="stay_id", how="left")
    all_rows = set_rows(predictions, "test_partial")
    resamples = patient_resamples(predictions.frame["subject_id"].to_numpy(),
                                  settings.n_bootstrap, settings.seed)
    table: list[SubgroupRow] = []
    for name, rule in SUBGROUPS.items():
        levels = rule(stays, list(settings.age_bands)).to_numpy()
        if all(level is None for level in levels):
            continue
        for level in level_order(name, list(settings.age_bands)):
            rows = all_rows & (levels == level)
            if not rows.any():
                continue
            n_patients = _n_patients(predictions, rows)
            row = SubgroupRow(name, level, int(rows.sum()), n_patients, int(predictions.y(rows).sum()),
                              suppressed=is_small(n_patients, settings.min_cell_size))
            if not row.suppressed:
                for head in predictions.heads:
                    selected = head_rows(predictions, rows, head)
                    if not selected.any():
                        continue  # not applicable: the CXR head on stays without an image
                    if is_small(_n_patients(predictions, selected), settings.min_cell_size):
                        row.auroc[head] = None
                        continue
                    scores = score_head(predictions.y(selected), predictions.p(head, selected),
                                        predictions.labels, resamples.stay_weights(
                                            predictions.frame["subject_id"].to_numpy()[selected]),
                                        micro=False)
                    row.auroc[head] = scores.summary["auroc"].estimate(settings.ci_level)
            table.append(row)
    return table


def label_counts(predictions: Predictions, rows: np.ndarray) -> list[LabelCounts]:
    y = predictions.y(rows)
    return [LabelCounts(label, int(y.shape[0]), int(y[:, k].sum()),
                        float(y[:, k].mean()) if y.shape[0] else float("nan"))
            for k, label in enumerate(predictions.labels)]


def paired_curves(predictions: Predictions) -> dict[str, Curves]:
    """ROC/PR points per head on the paired set; several labels pooled (micro-average)."""
    rows = set_rows(predictions, "test_paired")
    return {head: curves(predictions.y(rows).ravel(), predictions.p(head, rows).ravel())
            for head in predictions.heads if rows.any() and head not in SET_HEADS_SKIPPED["test_paired"]}


def evaluate_task(task: str, predictions: Predictions, demographics: pd.DataFrame | None,
                  settings: EvalSettings) -> TaskEvaluation:
    sets = {}
    for name in TEST_SETS:
        if not set_rows(predictions, name).any():
            log.warning("%s: no stays (no test stay has a chest X-ray?)", name)
            continue
        sets[name], _ = evaluate_set(predictions, name, settings)
        log.info("%s: %d stays evaluated with %d patient-level resamples",
                 name, sets[name].n_stays, settings.n_bootstrap)
    return TaskEvaluation(
        task=task, labels=list(predictions.labels), settings=settings, sets=sets,
        subgroups=evaluate_subgroups(predictions, demographics, settings),
        label_counts={name: label_counts(predictions, set_rows(predictions, name)) for name in sets},
        paired_curves=paired_curves(predictions), heads=predictions.heads)
