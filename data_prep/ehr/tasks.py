"""build_tasks' logic: stays + events + diagnoses -> labels.parquet and cohort.json per task."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.ehr.cohorts import LABELERS, TaskWindow, apply_rules, cohort_rules, first_event_hours
from data_prep.ehr.extract import seconds_timestamps
from data_prep.ehr.splits import SPLITS, assign_splits
from data_prep.ehr.streaming import read_table
from data_prep.errors import PipelineInputError
from data_prep.io import atomic_path, write_json
from data_prep.schemas import DIAGNOSES_ICD

log = logging.getLogger(__name__)


def build_task(task: str, stays: pd.DataFrame, diagnoses: pd.DataFrame, window: TaskWindow,
               split_seed: int, fractions: dict[str, float]) -> tuple[pd.DataFrame, dict]:
    """The labels table and the cohort flow of one task."""
    if task not in LABELERS:
        raise PipelineInputError(f"task.names: unknown task {task!r} (known: {', '.join(LABELERS)})")
    cohort, steps = apply_rules(stays, cohort_rules(window))
    cohort = cohort.sort_values("stay_id", ignore_index=True)
    end = cohort["intime"] + pd.to_timedelta(window.end_hours(cohort), unit="h") \
        if window.window_hours is not None else cohort["outtime"]
    labels = pd.DataFrame({
        "subject_id": cohort["subject_id"].astype(np.int64), "hadm_id": cohort["hadm_id"].astype(np.int64),
        "stay_id": cohort["stay_id"].astype(np.int64),
        "split": assign_splits(cohort["subject_id"], split_seed, fractions).astype(str),
        "intime": cohort["intime"], "window_end": end, "sex": cohort["gender"],
        "age": cohort["age"].astype(np.float64)})
    labels = pd.concat([labels, LABELERS[task](cohort, diagnoses)], axis=1)
    flow = {"task": task, "steps": steps, "final": len(labels),
            "splits": {name: int((labels["split"] == name).sum()) for name in SPLITS}}
    return labels, flow


def build_tasks(root: str | Path, ehr_dir: str | Path, out_dir: str | Path, tasks: list[str],
                windows: dict[str, TaskWindow], split_seed: int, fractions: dict[str, float]) -> dict[str, dict]:
    """Write <out_dir>/<task>/{labels.parquet, cohort.json} for every task, all or nothing."""
    ehr_dir = Path(ehr_dir)
    for name in ("stays.parquet", "events.parquet"):
        if not (ehr_dir / name).is_file():
            raise PipelineInputError(f"{ehr_dir / name}: not found (run the extract_ehr stage first)")
    stays = pd.read_parquet(ehr_dir / "stays.parquet")
    stays["first_event_hours"] = stays["stay_id"].map(first_event_hours(ehr_dir / "events.parquet"))
    diagnoses = read_table(DIAGNOSES_ICD, root, ["hadm_id", "icd_code", "icd_version"]).to_pandas()
    flows = {}
    with atomic_path(out_dir) as target:
        for task in tasks:
            labels, flow = build_task(task, stays, diagnoses, windows[task], split_seed, fractions)
            (target / task).mkdir(parents=True)
            pq.write_table(seconds_timestamps(pa.Table.from_pandas(labels, preserve_index=False)),
                           target / task / "labels.parquet")
            write_json(target / task / "cohort.json", flow)
            flows[task] = flow
    return flows

