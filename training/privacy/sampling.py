"""Poisson sampling of patients (all of a sampled patient's stays come along) and a collate
that survives empty batches.

DP-SGD's accounting assumes each batch is a Poisson sample: every unit of privacy joins each
step independently with probability q. The unit here is the patient, so the draw is per
patient and a drawn patient brings every training stay of theirs; the batch size varies, and
a batch can be empty (the step then still happens: noise only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from data_prep.dataset import collate


class PatientPoissonBatchSampler(Sampler[list[int]]):
    """`steps` batches per epoch; in each, every patient is drawn with probability `sample_rate`."""

    def __init__(self, subject_ids: np.ndarray, sample_rate: float, steps: int,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.patients, self.patient_of_stay = np.unique(np.asarray(subject_ids), return_inverse=True)
        self.sample_rate, self.steps, self.generator = float(sample_rate), int(steps), generator

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            drawn = (torch.rand(len(self.patients), generator=self.generator) < self.sample_rate).numpy()
            yield np.flatnonzero(drawn[self.patient_of_stay]).tolist()


class EmptyTolerantCollate:
    """`data_prep.dataset.collate`, except that an empty list gives a batch of zero rows with
    the shapes of `example` (one item of the dataset), so the step runs and adds its noise."""

    def __init__(self, example: dict[str, Any], base: Callable[[Sequence[dict[str, Any]]], dict] = collate) -> None:
        self.base = base
        self.empty = {key: value[:0] for key, value in base([example]).items()}

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not items:
            return {key: value.clone() for key, value in self.empty.items()}
        return self.base(items)


def is_empty(batch: dict[str, torch.Tensor]) -> bool:
    return int(batch["labels"].shape[0]) == 0
