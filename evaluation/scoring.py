"""Scores of one head on one set of stays: per label, and macro/micro over labels.

The plain estimate and every bootstrap resample go through the same call (row 0 of the
weight matrix is all ones), so the CI is a CI of exactly the reported estimator. The macro
average is computed per resample, never by averaging per-label CI bounds, over one fixed
label set: the labels defined on the whole set. A resample in which one of them has a single
class gives no macro value (it is counted as invalid) rather than a mean over fewer labels,
because dropping the rare labels a resample happens to miss would shift the replicates away
from the point estimate (rare labels have the lowest AUPRC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.bootstrap import Estimate, estimate
from evaluation.metrics import auroc_ap

METRICS = ("auroc", "auprc")


@dataclass(frozen=True)
class Scored:
    """A metric's plain value and its bootstrap replicates (NaN where undefined)."""

    point: float
    replicates: np.ndarray

    def estimate(self, ci_level: float) -> Estimate:
        return estimate(self.point, self.replicates, ci_level)


@dataclass(frozen=True)
class HeadScores:
    per_label: dict[str, dict[str, Scored]]  # label -> metric -> scored
    summary: dict[str, Scored]               # auroc, auprc (macro if several labels), *_micro


def _with_point_row(weights: np.ndarray) -> np.ndarray:
    return np.vstack([np.ones((1, weights.shape[1]), dtype=weights.dtype), weights])


def _mean_rows(stacked: np.ndarray) -> np.ndarray:
    """Column means; NaN wherever any label is undefined in that resample."""
    return stacked.mean(axis=0)


def score_head(y_true: np.ndarray, y_prob: np.ndarray, labels: list[str],
               weights: np.ndarray, micro: bool = True) -> HeadScores:
    """y_true, y_prob: [n_stays, n_labels]; weights: [n_bootstrap, n_stays] resample weights.

    micro=False skips the pooled metrics (subgroup tables show the macro AUROC only).
    """
    all_weights = _with_point_row(weights)
    per_label: dict[str, dict[str, Scored]] = {}
    stacked: dict[str, list[np.ndarray]] = {metric: [] for metric in METRICS}
    for column, label in enumerate(labels):
        values = auroc_ap(y_true[:, column], y_prob[:, column], all_weights)
        per_label[label] = {}
        for metric, rows in zip(METRICS, values, strict=True):
            per_label[label][metric] = Scored(float(rows[0]), rows[1:])
            if np.isfinite(rows[0]):  # a label undefined on the whole set never enters the macro
                stacked[metric].append(rows)
    if len(labels) == 1:
        return HeadScores(per_label, dict(per_label[labels[0]]))
    summary: dict[str, Scored] = {}
    for metric in METRICS:
        if stacked[metric]:
            macro = _mean_rows(np.vstack(stacked[metric]))
        else:
            macro = np.full(all_weights.shape[0], np.nan)
        summary[metric] = Scored(float(macro[0]), macro[1:])
    if not micro:
        return HeadScores(per_label, summary)
    micro = auroc_ap(y_true.ravel(), y_prob.ravel(), np.repeat(all_weights, len(labels), axis=1))
    for metric, rows in zip(METRICS, micro, strict=True):
        summary[f"{metric}_micro"] = Scored(float(rows[0]), rows[1:])
    return HeadScores(per_label, summary)
