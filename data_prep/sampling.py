"""Batches of stays with similar EHR lengths, so a padded batch wastes few LSTM steps.

Phenotyping reads whole stays (7 to 600 hours on the default twin, median about 60). Drawn
at random, a batch of 32 is padded to its longest stay: the LSTM then runs about 3.5 times
the hours the stays have. Sorting by length inside pools of `pool` batches' worth of stays
(the bucketing of torchtext's BucketIterator and of fairseq) brings that to about 1.2 at
pool 16 while every epoch still visits every stay once, in an order drawn from the loader's
generator: the same seed gives the same batches. Fixed-window tasks (48 h of IHM) are
unaffected but for the batch order. Evaluation sorts by length outright; predictions are
re-sorted by stay_id afterwards (training/predictions.py), so the order leaves no trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Index batches with similar `lengths`: shuffled pools of `pool` batches sorted by length
    when `shuffle`, one length-sorted pass otherwise. `pool=1` is plain shuffled batching."""

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, *, shuffle: bool,
                 pool: int = 16, drop_last: bool = False, generator: torch.Generator | None = None) -> None:
        if batch_size < 1 or pool < 1:
            raise ValueError(f"batch_size and pool must be >= 1, got {batch_size} and {pool}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.shuffle, self.pool, self.drop_last = batch_size, shuffle, pool, drop_last
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.argsort(self.lengths, kind="stable")
        permutation = torch.randperm(len(self.lengths), generator=self.generator).numpy()
        pool_size = self.pool * self.batch_size
        pools = [permutation[start:start + pool_size] for start in range(0, len(permutation), pool_size)]
        return np.concatenate([chunk[np.argsort(self.lengths[chunk], kind="stable")] for chunk in pools])

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        batches = [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:  # otherwise the longest stays would always come last in the epoch
            batches = [batches[k] for k in torch.randperm(len(batches), generator=self.generator).tolist()]
        for batch in batches:
            yield batch.tolist()
