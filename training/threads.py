"""CPU thread counts for a run: intra-op threads from `train.threads`, one inter-op thread.

Measured on the 2-core machine (bench/RESULTS.md, "CPU threads"): on an idle machine a
phenotyping step takes 1.0 s with 2 intra-op threads and 1.9 s with 1; with the other core
busy, 2 threads take 3.8 s (OpenMP's threads wait on each other at every parallel region
while one of them is descheduled; 2.5 s once training/__init__.py makes waiting threads sleep
rather than spin) and 1 thread 1.8 s. So `auto` uses every core this process
may run on, the right choice for `dvc repro` on its own; a caller that runs jobs side by
side (the study runner, CI next to other work) sets `train.threads=1` per job, which gives
the most training per core. Inter-op threads only serve TorchScript's fork/wait, which the
pipeline never uses: one avoids an idle pool contending for the cores. DataLoader workers
are `train.num_workers` (0 by default: loading a batch from the memory-mapped caches takes
a few ms, bench/loader.py, and a worker process would compete with the step for the cores).
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from data_prep.errors import PipelineInputError

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def intra_op_threads(setting: object) -> int:
    """`auto` -> every usable core; a positive integer -> that many."""
    if str(setting) == "auto":
        return usable_cores()
    try:
        threads = int(setting)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        threads = 0
    if threads < 1:
        raise PipelineInputError(f"train.threads={setting!r}: expected 'auto' or a positive integer")
    return threads


def configure_threads(setting: object) -> int:
    """Apply the run's thread counts and return the intra-op count."""
    threads = intra_op_threads(setting)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # fixed once inter-op work ran (tests, notebooks)
        torch.set_num_interop_threads(1)
    log.info("CPU threads: %d intra-op (train.threads=%s), 1 inter-op", threads, setting)
    return threads
