"""Task cohorts as an ordered list of named rules, each counted (the report's cohort flow).

Root cohort, in the order of the mimic3-benchmarks recipe (`remove_icustays_with_transfers`,
then `filter_admissions_on_nb_icustays`, then `filter_icustays_on_age`): stays with an ICU
transfer are removed first, and the one-stay-per-admission rule counts only the stays that
remain, so an admission whose other stay was a transfer keeps its single remaining stay.
Before them, stays whose recorded times are impossible (outtime before intime, or missing)
are removed under a rule of their own, so they are not miscounted as too short. Each task
then adds its stay-length and window rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep.ehr.discretize import BIN_EPSILON
from data_prep.ehr.phenotypes import phenotype_labels


@dataclass(frozen=True)
class TaskWindow:
    """The part of a stay a task reads: [0, window_hours) from intime, or the whole stay."""

    min_age: float
    min_stay_hours: float
    window_hours: float | None

    def end_hours(self, stays: pd.DataFrame) -> pd.Series:
        if self.window_hours is None:
            return stays["los_hours"]
        return pd.Series(float(self.window_hours), index=stays.index)


Rule = tuple[str, Callable[[pd.DataFrame], pd.Series]]


def cohort_rules(window: TaskWindow) -> list[Rule]:
    span = "during the stay" if window.window_hours is None else f"in the first {window.window_hours:g} h"
    return [
        ("valid ICU times (intime <= outtime)", lambda s: s["intime"] <= s["outtime"]),
        ("no ICU transfer (first_careunit == last_careunit)", lambda s: s["first_careunit"] == s["last_careunit"]),
        ("exactly one ICU stay left in the admission", remaining_stays_in_admission_is_one),
        (f"age >= {window.min_age:g} at ICU admission", lambda s: s["age"] >= window.min_age),
        ("has events", lambda s: s["n_events"] > 0),
        (f"length of stay >= {window.min_stay_hours:g} h", lambda s: s["los_hours"] >= window.min_stay_hours),
        # an event exactly at the window's end belongs to its last bin (discretize.bin_of_hours)
        (f"at least one event {span}", lambda s: s["first_event_hours"] <= window.end_hours(s) + BIN_EPSILON),
    ]


def remaining_stays_in_admission_is_one(stays: pd.DataFrame) -> pd.Series:
    """Counted among the stays still in the cohort (after the transfer rule), as the recipe
    does; stays.parquet's `stays_in_admission` counts all of the admission's stays."""
    return stays.groupby("hadm_id")["stay_id"].transform("size") == 1


def apply_rules(stays: pd.DataFrame, rules: list[Rule]) -> tuple[pd.DataFrame, list[dict]]:
    """Apply rules in order; return the cohort and the steps {rule, removed, remaining}."""
    steps = []
    for name, keep in rules:
        kept = stays[keep(stays).fillna(False).to_numpy(bool)]
        steps.append({"rule": name, "removed": len(stays) - len(kept), "remaining": len(kept)})
        stays = kept
    return stays, steps


def first_event_hours(events_path: Path) -> pd.Series:
    """Per stay, the earliest event at or after ICU admission (hours), read in bounded batches."""
    firsts = []
    parquet = pq.ParquetFile(events_path)
    for batch in tqdm(parquet.iter_batches(columns=["stay_id", "hours"], batch_size=2**20),
                      desc="scan events", unit="batch", leave=False):
        frame = batch.to_pandas()
        frame = frame[frame["hours"] > -BIN_EPSILON]
        firsts.append(frame.groupby("stay_id")["hours"].min())
    if not firsts:
        return pd.Series(dtype=np.float64)
    return pd.concat(firsts).groupby(level=0).min().astype(np.float64)


# task name -> f(cohort stays, diagnoses) -> label frame (one float32 column per label)
LABELERS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]] = {
    "in_hospital_mortality": lambda stays, _: pd.DataFrame(
        {"in_hospital_mortality": stays["died_in_hospital"].to_numpy(np.float32)}),
    "phenotyping": lambda stays, diagnoses: phenotype_labels(stays["hadm_id"].to_numpy(), diagnoses),
}
