"""Seeded patient-level bootstrap shared by every head, metric and experiment.

Stays of one patient are correlated, so the resampling unit is the patient (subject_id):
a resample draws patients with replacement and keeps all their stays. The draws depend only
on the seed and the sorted set of patients, so every head of a run, and every experiment
evaluated on the same test set, sees the very same resamples; the difference of two metrics
per resample then gives a paired confidence interval for the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PatientResamples:
    """Bootstrap draws as per-patient multiplicities: counts[r, k] = times patient k was drawn."""

    subjects: np.ndarray  # sorted unique subject ids (never reported)
    counts: np.ndarray    # [n_bootstrap, n_subjects] int64

    @property
    def n_bootstrap(self) -> int:
        return int(self.counts.shape[0])

    def stay_weights(self, stay_subjects: np.ndarray) -> np.ndarray:
        """[n_bootstrap, n_stays] integer weights of stays whose patients are `stay_subjects`."""
        position = np.searchsorted(self.subjects, stay_subjects)
        if np.any(position >= self.subjects.size) or np.any(self.subjects[position] != stay_subjects):
            raise ValueError("stay_weights: a stay's patient is not in the resampled set")
        return self.counts[:, position]


def patient_resamples(subject_ids: np.ndarray, n_bootstrap: int, seed: int) -> PatientResamples:
    subjects = np.unique(np.asarray(subject_ids))
    n = subjects.size
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_bootstrap, n)) if n else np.zeros((n_bootstrap, 0), int)
    flat = (draws + np.arange(n_bootstrap)[:, None] * n).ravel()
    counts = np.bincount(flat, minlength=n_bootstrap * n).reshape(n_bootstrap, n)
    return PatientResamples(subjects, counts.astype(np.int64))


@dataclass(frozen=True)
class Estimate:
    """A point estimate, its percentile CI over the valid resamples, and how many were valid.

    A resample is invalid for a metric when the metric is undefined on it (e.g. AUROC of a
    resample holding one class); the CI uses the valid ones and says how many there were.
    """

    value: float
    ci_low: float
    ci_high: float
    n_valid: int
    n_bootstrap: int


def estimate(point: float, replicates: np.ndarray, ci_level: float) -> Estimate:
    replicates = np.asarray(replicates, dtype=np.float64)
    valid = replicates[np.isfinite(replicates)]
    if valid.size == 0 or not np.isfinite(point):
        low = high = float("nan")
    else:
        tail = (1.0 - ci_level) / 2.0 * 100.0
        low, high = (float(v) for v in np.percentile(valid, [tail, 100.0 - tail]))
    return Estimate(float(point), low, high, int(valid.size), int(replicates.size))


def difference(point_a: float, replicates_a: np.ndarray, point_b: float,
               replicates_b: np.ndarray, ci_level: float) -> Estimate:
    """Paired difference a - b: per-resample differences, valid where both metrics are."""
    return estimate(point_a - point_b, np.asarray(replicates_a) - np.asarray(replicates_b), ci_level)
