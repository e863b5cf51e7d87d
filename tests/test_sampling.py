"""Length-bucketed batching (data_prep/sampling.py) and the thread setting (training/threads.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_prep.errors import PipelineInputError
from data_prep.sampling import LengthBucketBatchSampler
from training.threads import intra_op_threads, usable_cores

LENGTHS = np.random.default_rng(0).integers(5, 600, size=203)


def padded_hours(batches: list[list[int]]) -> int:
    return sum(len(batch) * int(LENGTHS[batch].max()) for batch in batches)


def test_every_stay_once_per_epoch_in_shuffled_pools():
    sampler = LengthBucketBatchSampler(LENGTHS, 16, shuffle=True, pool=4,
                                       generator=torch.Generator().manual_seed(1))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    assert sorted(i for batch in batches for i in batch) == list(range(len(LENGTHS)))


def test_bucketing_cuts_padding_and_pool_one_is_plain_shuffling():
    def hours(pool: int) -> float:
        return np.mean([padded_hours(list(LengthBucketBatchSampler(
            LENGTHS, 16, shuffle=True, pool=pool, generator=torch.Generator().manual_seed(seed))))
            for seed in range(5)])

    real_hours = int(LENGTHS.sum())
    assert hours(1) > 1.6 * real_hours  # a random batch of 16 is padded to near the longest stay
    assert hours(8) < 1.3 * real_hours
    plain = list(LengthBucketBatchSampler(LENGTHS, 16, shuffle=True, pool=1,
                                          generator=torch.Generator().manual_seed(0)))
    spread = [int(np.ptp(LENGTHS[batch])) for batch in plain]
    assert np.median(spread) > 300  # unsorted batches mix short and long stays


def test_the_same_generator_seed_gives_the_same_batches_and_another_seed_others():
    def batches(seed: int) -> list[list[int]]:
        return list(LengthBucketBatchSampler(LENGTHS, 16, shuffle=True, generator=torch.Generator().manual_seed(seed)))

    assert batches(3) == batches(3)
    assert batches(3) != batches(4)


def test_evaluation_is_one_sorted_pass_and_drop_last_drops_only_the_short_batch():
    batches = list(LengthBucketBatchSampler(LENGTHS, 16, shuffle=False))
    flat = [i for batch in batches for i in batch]
    assert np.all(np.diff(LENGTHS[flat]) >= 0)
    dropped = list(LengthBucketBatchSampler(LENGTHS, 16, shuffle=True, drop_last=True,
                                            generator=torch.Generator().manual_seed(0)))
    assert len(dropped) == 12 and all(len(batch) == 16 for batch in dropped)


def test_thread_setting():
    assert intra_op_threads("auto") == usable_cores() >= 1
    assert intra_op_threads(1) == 1
    for bad in (0, -2, "many"):
        with pytest.raises(PipelineInputError, match=r"train\.threads="):
            intra_op_threads(bad)
