"""AUROC and average precision for many bootstrap resamples at once.

A patient-level bootstrap resample is a vector of non-negative integer weights over stays
(how often each stay's patient was drawn). Scoring with integer weights is exactly scoring
the data with rows duplicated, so one sort of the scores serves every resample: cumulative
weighted true/false positive counts at each distinct score give the ROC and PR curves of all
resamples as matrix rows. That turns 1000 resamples x 25 labels x 3 heads into a few
hundred vectorized cumulative sums (seconds) instead of 75,000 scikit-learn calls (minutes).

AUROC is the trapezoid under the ROC curve at distinct thresholds, which equals the
Mann-Whitney statistic with ties counted one half (scikit-learn's `roc_auc_score`).
AUPRC is average precision, sum over thresholds of (recall step) x precision, with no
interpolation (scikit-learn's `average_precision_score`), not the trapezoid under the PR
curve (which is optimistic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLE_CHUNK = 256  # bounds memory: chunk x stays int64 cumulative sums


@dataclass(frozen=True)
class CurveCounts:
    """Weighted cumulative counts at each distinct score threshold, highest score first."""

    true_positives: np.ndarray   # [R, G]
    false_positives: np.ndarray  # [R, G]


def _threshold_counts(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> CurveCounts:
    order = np.argsort(-y_score, kind="mergesort")
    scores = y_score[order]
    positive = y_true[order].astype(np.int64)
    w = weights[:, order].astype(np.int64, copy=False)
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(w * positive, axis=1)[:, last_of_tie]
    fp = np.cumsum(w * (1 - positive), axis=1)[:, last_of_tie]
    return CurveCounts(tp, fp)


def _auroc_ap_from_counts(counts: CurveCounts) -> tuple[np.ndarray, np.ndarray]:
    tp = counts.true_positives.astype(np.float64)
    fp = counts.false_positives.astype(np.float64)
    n_pos, n_neg = tp[:, -1], fp[:, -1]
    tp_prev = np.pad(tp, ((0, 0), (1, 0)))[:, :-1]
    fp_prev = np.pad(fp, ((0, 0), (1, 0)))[:, :-1]
    valid = (n_pos > 0) & (n_neg > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auroc = ((fp - fp_prev) * (tp + tp_prev)).sum(axis=1) / (2.0 * n_pos * n_neg)
        predicted = tp + fp
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1.0), 0.0)
        ap = ((tp - tp_prev) * precision).sum(axis=1) / n_pos
    auroc[~valid] = np.nan
    ap[~valid] = np.nan
    return auroc, ap


def auroc_ap(y_true: np.ndarray, y_score: np.ndarray,
             weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of one binary label, per row of `weights` ([R, n] integers).

    Without weights, one row of ones (the plain estimate). A row whose weighted data hold a
    single class gives NaN for both metrics (neither is defined), never an exception.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if weights is None:
        weights = np.ones((1, y_true.size), dtype=np.int64)
    weights = np.atleast_2d(weights)
    if y_true.size == 0:
        nan = np.full(weights.shape[0], np.nan)
        return nan, nan.copy()
    aurocs, aps = [], []
    for start in range(0, weights.shape[0], RESAMPLE_CHUNK):
        auroc, ap = _auroc_ap_from_counts(
            _threshold_counts(y_true, y_score, weights[start:start + RESAMPLE_CHUNK]))
        aurocs.append(auroc)
        aps.append(ap)
    return np.concatenate(aurocs), np.concatenate(aps)


@dataclass(frozen=True)
class Curves:
    """Unweighted ROC and precision-recall curve points for plotting (scikit-learn conventions)."""

    fpr: np.ndarray
    tpr: np.ndarray
    recall: np.ndarray
    precision: np.ndarray


def curves(y_true: np.ndarray, y_score: np.ndarray) -> Curves:
    """ROC from (0, 0) and PR from recall 0 (precision 1), as scikit-learn draws them."""
    y_true = np.asarray(y_true)
    counts = _threshold_counts(y_true, np.asarray(y_score, dtype=np.float64),
                               np.ones((1, y_true.size), dtype=np.int64))
    tp = counts.true_positives[0].astype(np.float64)
    fp = counts.false_positives[0].astype(np.float64)
    n_pos, n_neg = tp[-1], fp[-1]
    if n_pos == 0 or n_neg == 0:
        empty = np.array([])
        return Curves(empty, empty, empty, empty)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    recall = np.r_[0.0, tp / n_pos]
    precision = np.r_[1.0, tp / (tp + fp)]
    return Curves(fpr, tpr, recall, precision)
