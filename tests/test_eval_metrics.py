"""The vectorized metrics agree with scikit-learn on the same arrays (ties, weights, averages)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from evaluation.calibration import calibration, logistic_recalibration, reliability_bins
from evaluation.metrics import auroc_ap, curves
from evaluation.scoring import score_head


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_ap_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = rng.integers(0, 2, n)
    score = np.round(rng.random(n) + 0.3 * y, 1)  # coarse rounding: many ties
    auroc, ap = auroc_ap(y, score)
    assert auroc[0] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert ap[0] == pytest.approx(average_precision_score(y, score), abs=1e-12)


def test_integer_weights_equal_duplicated_rows():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 80)
    score = np.round(rng.random(80), 2)
    weights = rng.integers(0, 4, (20, 80))
    auroc, ap = auroc_ap(y, score, weights)
    for row in range(20):
        yy, ss = np.repeat(y, weights[row]), np.repeat(score, weights[row])
        assert auroc[row] == pytest.approx(roc_auc_score(yy, ss), abs=1e-12)
        assert ap[row] == pytest.approx(average_precision_score(yy, ss), abs=1e-12)


def test_single_class_gives_nan_not_an_error():
    auroc, ap = auroc_ap(np.zeros(5), np.linspace(0, 1, 5))
    assert np.isnan(auroc[0]) and np.isnan(ap[0])
    # a weight row that drops every positive is undefined too
    auroc, _ = auroc_ap(np.array([1, 0, 0]), np.array([0.9, 0.1, 0.2]), np.array([[0, 2, 1], [1, 1, 1]]))
    assert np.isnan(auroc[0]) and auroc[1] == 1.0


def test_macro_and_micro_match_sklearn():
    rng = np.random.default_rng(3)
    n, labels = 200, [f"l{k}" for k in range(6)]
    y = (rng.random((n, 6)) < np.linspace(0.1, 0.5, 6)).astype(float)
    p = np.clip(0.4 * y + rng.random((n, 6)) * 0.8, 0, 1).round(2)
    scores = score_head(y, p, labels, np.ones((3, n), dtype=np.int64))
    assert scores.summary["auroc"].point == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert scores.summary["auprc"].point == pytest.approx(average_precision_score(y, p, average="macro"))
    assert scores.summary["auroc_micro"].point == pytest.approx(roc_auc_score(y, p, average="micro"))
    assert scores.summary["auprc_micro"].point == pytest.approx(average_precision_score(y, p, average="micro"))
    # all-ones weights reproduce the point estimate in every resample
    assert np.allclose(scores.summary["auroc"].replicates, scores.summary["auroc"].point)


def test_curves_match_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 150)
    score = np.round(rng.random(150), 2)
    drawn = curves(y, score)
    fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
    assert np.allclose(drawn.fpr, fpr) and np.allclose(drawn.tpr, tpr)
    precision, recall, _ = precision_recall_curve(y, score)
    assert np.allclose(drawn.recall, recall[::-1]) and np.allclose(drawn.precision, precision[::-1])


def test_calibration_slope_intercept_match_unpenalized_logistic_regression():
    rng = np.random.default_rng(11)
    p = rng.uniform(0.02, 0.98, 2000)
    truth = 1 / (1 + np.exp(-(0.3 + 0.6 * np.log(p / (1 - p)))))
    y = (rng.random(2000) < truth).astype(float)
    slope, intercept = logistic_recalibration(y, p)
    model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(np.log(p / (1 - p))[:, None], y)
    assert slope == pytest.approx(model.coef_[0][0], abs=1e-5)
    assert intercept == pytest.approx(model.intercept_[0], abs=1e-5)
    assert 0.45 < slope < 0.75  # recovers the planted miscalibration
    result = calibration(y, p, 10)
    assert result.brier == pytest.approx(brier_score_loss(y, p))


def test_recalibration_undefined_without_both_classes_or_with_separation():
    assert all(np.isnan(logistic_recalibration(np.zeros(10), np.linspace(0.1, 0.9, 10))))
    separated = np.array([0, 0, 0, 1, 1, 1.0])
    assert all(np.isnan(logistic_recalibration(separated, np.array([.1, .2, .3, .7, .8, .9]))))


def test_reliability_bins_are_equal_width_and_count_everything():
    p = np.array([0.0, 0.05, 0.15, 0.95, 1.0])
    y = np.array([0, 0, 1, 1, 1])
    bins = reliability_bins(y, p, 10)
    assert [b.n for b in bins] == [2, 1, 2]
    assert bins[-1].lower == pytest.approx(0.9) and bins[-1].observed == 1.0
    assert bins[0].mean_predicted == pytest.approx(0.025)
