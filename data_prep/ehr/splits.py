"""Patient-level splits by a seeded hash of subject_id.

Each subject's split is a pure function of (seed, subject_id): blake2b of "seed:subject_id"
gives a uniform number in [0, 1) that is cut at the train / val fractions. Adding or
removing patients therefore never moves anyone else, and a subject's stays all land in the
same split. (Stratifying by label would make a split depend on other patients, which is
exactly what stability forbids; at these cohort sizes hashing keeps prevalences close.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from data_prep.errors import PipelineInputError

SPLITS = ("train", "val", "test")


def subject_uniform(subject_id: int, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{int(subject_id)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_splits(subject_ids: Iterable[int], seed: int, fractions: dict[str, float]) -> np.ndarray:
    """train / val / test per subject id (same order as given)."""
    shares = np.array([float(fractions[name]) for name in SPLITS])
    if np.any(shares < 0) or not np.isclose(shares.sum(), 1.0):
        raise PipelineInputError(f"data.split: train/val/test fractions {shares.tolist()} must be >= 0 and sum to 1")
    cuts = np.cumsum(shares)[:-1]
    unique, inverse = np.unique(np.fromiter((int(s) for s in subject_ids), dtype=np.int64), return_inverse=True)
    draws = np.array([subject_uniform(s, seed) for s in unique])
    return np.array(SPLITS, dtype=object)[np.searchsorted(cuts, draws, side="right")][inverse]
