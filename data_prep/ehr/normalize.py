"""Standardization of the continuous columns with statistics of the training split only.

MedFuse reused MIMIC-III statistics on MIMIC-IV; here they are computed on this cohort's
training stays (imputed hourly rows, as the benchmark's normalizer does) and saved beside
the tensors. One-hot and mask columns are left as 0/1.
"""

from __future__ import annotations

import numpy as np


class RunningMoments:
    """Sum and sum of squares per column, accumulated over chunks (float64)."""

    def __init__(self, n_columns: int) -> None:
        self.count = 0
        self.total = np.zeros(n_columns)
        self.total_sq = np.zeros(n_columns)

    def update(self, values: np.ndarray) -> None:
        values = values.astype(np.float64)
        self.count += len(values)
        self.total += values.sum(axis=0)
        self.total_sq += (values ** 2).sum(axis=0)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count == 0:
            return np.zeros_like(self.total), np.ones_like(self.total)
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.total_sq / self.count - mean ** 2, 0.0))
        return mean, np.where(std > 1e-6, std, 1.0)


def normalization_record(names: list[str], mean: np.ndarray, std: np.ndarray, n_rows: int) -> dict:
    return {"source": "training split, imputed hourly rows", "rows": n_rows, "columns": names,
            "mean": dict(zip(names, mean.tolist(), strict=True)),
            "std": dict(zip(names, std.tolist(), strict=True))}


def standardize(values: np.ndarray, columns: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[:, columns] = (values[:, columns] - mean) / std
    return out
