"""The patient-level bootstrap: seeded, shared, paired, robust to one-class resamples, and
its 95% intervals cover a known AUROC about 95% of the time."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from evaluation.bootstrap import difference, estimate, patient_resamples
from evaluation.metrics import auroc_ap
from evaluation.scoring import score_head


def test_same_seed_same_resamples_different_seed_different():
    subjects = np.array([5, 3, 3, 9, 11, 11, 11, 20])
    a = patient_resamples(subjects, 50, seed=1)
    b = patient_resamples(subjects[::-1], 50, seed=1)  # same set of patients, other order
    c = patient_resamples(subjects, 50, seed=2)
    assert np.array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)
    assert (a.counts.sum(axis=1) == 5).all()  # each resample draws as many patients as there are


def test_stays_of_a_patient_move_together():
    subjects = np.array([1, 1, 2, 3, 3, 3])
    weights = patient_resamples(subjects, 100, seed=0).stay_weights(subjects)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()


def test_identical_cis_with_the_same_seed():
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(60), 2)
    y = rng.integers(0, 2, (120, 1)).astype(float)
    p = rng.random((120, 1))
    def ci(seed):
        weights = patient_resamples(subjects, 200, seed).stay_weights(subjects)
        return score_head(y, p, ["y"], weights).summary["auroc"].estimate(0.95)
    assert ci(4) == ci(4)
    assert ci(4).ci_low != ci(5).ci_low


def test_single_class_resamples_are_skipped_and_counted():
    subjects = np.arange(12)
    y = np.zeros((12, 1))
    y[3, 0] = 1  # one positive patient: about 1/e of resamples miss it
    p = np.linspace(0.05, 0.95, 12)[:, None]
    weights = patient_resamples(subjects, 300, seed=1).stay_weights(subjects)
    scored = score_head(y, p, ["rare"], weights).summary["auroc"]
    est = scored.estimate(0.95)
    missing_positive = int((weights[:, 3] == 0).sum())
    assert missing_positive > 50
    assert est.n_valid == 300 - missing_positive and est.n_bootstrap == 300
    assert math.isfinite(est.ci_low) and est.ci_low <= est.value <= est.ci_high


def test_no_valid_resample_gives_nan_ci_not_an_error():
    est = estimate(float("nan"), np.full(10, np.nan), 0.95)
    assert est.n_valid == 0 and math.isnan(est.ci_low)


def test_macro_is_averaged_per_resample_not_from_label_bounds():
    rng = np.random.default_rng(2)
    subjects = np.arange(80)
    y = (rng.random((80, 3)) < 0.3).astype(float)
    p = np.clip(0.3 * y + rng.random((80, 3)), 0, 1)
    weights = patient_resamples(subjects, 200, seed=3).stay_weights(subjects)
    scores = score_head(y, p, ["a", "b", "c"], weights)
    per_label = np.vstack([scores.per_label[k]["auroc"].replicates for k in "abc"])
    assert np.allclose(scores.summary["auroc"].replicates, np.nanmean(per_label, axis=0))


def test_paired_difference_of_a_head_with_itself_is_exactly_zero():
    rng = np.random.default_rng(1)
    reps = rng.random(100)
    diff = difference(0.8, reps, 0.8, reps, 0.95)
    assert diff.value == 0 and diff.ci_low == 0 and diff.ci_high == 0


def test_paired_ci_is_narrower_than_unpaired_for_correlated_heads():
    rng = np.random.default_rng(8)
    n = 300
    y = rng.integers(0, 2, n)
    shared = rng.normal(size=n) + y
    p_a, p_b = shared + 0.3 * rng.normal(size=n), shared + 0.3 * rng.normal(size=n) + 0.2 * y
    weights = patient_resamples(np.arange(n), 400, seed=0).stay_weights(np.arange(n))
    a, _ = auroc_ap(y, p_a, weights)
    b, _ = auroc_ap(y, p_b, weights)
    paired = difference(0, b, 0, a, 0.95)
    unpaired_width = np.percentile(b, 97.5) - np.percentile(b, 2.5) + np.percentile(a, 97.5) - np.percentile(a, 2.5)
    assert paired.ci_high - paired.ci_low < 0.6 * unpaired_width


def test_percentile_ci_covers_a_known_auroc():
    """Binormal scores with separation d have AUROC Phi(d / sqrt(2)); 100 data sets x 200 resamples."""
    d = 1.0
    true_auroc = 0.5 * (1 + math.erf(d / 2))  # Phi(d / sqrt 2)
    rng = np.random.default_rng(2024)
    n_pos, n_neg, covered = 60, 90, 0
    started = time.perf_counter()
    for trial in range(100):
        y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
        score = np.r_[rng.normal(d, 1, n_pos), rng.normal(0, 1, n_neg)]
        subjects = np.arange(y.size)
        weights = patient_resamples(subjects, 200, seed=trial).stay_weights(subjects)
        point, _ = auroc_ap(y, score)
        reps, _ = auroc_ap(y, score, weights)
        est = estimate(point[0], reps, 0.95)
        covered += est.ci_low <= true_auroc <= est.ci_high
    assert 0.85 <= covered / 100 <= 0.99, f"coverage {covered}%"
    assert time.perf_counter() - started < 20, "the vectorized bootstrap should take seconds"


def test_default_bootstrap_size_runs_in_seconds():
    """1000 resamples x 25 labels x 3 heads on ~400 stays: the scale of the real test set."""
    rng = np.random.default_rng(0)
    subjects = np.repeat(np.arange(250), rng.integers(1, 3, 250))[:400]
    y = (rng.random((subjects.size, 25)) < 0.2).astype(float)
    weights = patient_resamples(subjects, 1000, seed=1).stay_weights(subjects)
    labels = [f"l{k}" for k in range(25)]
    started = time.perf_counter()
    for _ in range(3):
        score_head(y, rng.random(y.shape), labels, weights)
    assert time.perf_counter() - started < 30


def test_macro_uses_one_fixed_label_set_in_every_resample():
    """A resample that misses a rare label's positives gives no macro value (counted invalid),
    so the replicates average the same labels as the point estimate."""
    rng = np.random.default_rng(3)
    n = 60
    common = (rng.random(n) < 0.4).astype(float)
    rare = np.zeros(n)
    rare[:2] = 1.0  # two positives: many resamples draw neither
    y_true = np.column_stack([common, rare])
    y_prob = np.clip(y_true * 0.3 + rng.random((n, 2)) * 0.7, 0, 1)
    weights = rng.multinomial(n, np.full(n, 1 / n), size=200).astype(float)

    scores = score_head(y_true, y_prob, ["common", "rare"], weights)
    macro = scores.summary["auprc"].replicates
    rare_rows = scores.per_label["rare"]["auprc"].replicates
    common_rows = scores.per_label["common"]["auprc"].replicates
    undefined = ~np.isfinite(rare_rows)
    assert undefined.any() and (~undefined).any()
    assert np.isnan(macro[undefined]).all()
    np.testing.assert_allclose(macro[~undefined], (rare_rows + common_rows)[~undefined] / 2)
    assert scores.summary["auprc"].point == pytest.approx(
        (scores.per_label["rare"]["auprc"].point + scores.per_label["common"]["auprc"].point) / 2)
