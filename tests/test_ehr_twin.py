"""The three EHR stages on a tiny synthetic twin (the generator of data_prep.synthesize)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from data_prep.ehr.cohorts import TaskWindow
from data_prep.ehr.extract import extract_ehr
from data_prep.ehr.tasks import build_tasks
from data_prep.ehr.tensors import build_tensors
from data_prep.ehr.variables import load_variable_map
from data_prep.synthesize import generate_twin

WINDOWS = {"in_hospital_mortality": TaskWindow(18, 48, 48), "phenotyping": TaskWindow(18, 0, None)}


def test_twin_runs_through_extraction_tasks_and_tensors(tmp_path):
    twin = generate_twin(tmp_path / "twin", n_subjects=40, seed=0, image_size=16)
    root = tmp_path / "twin" / "mimic-iv"
    variables = load_variable_map("extended")
    summary = extract_ehr(root, tmp_path / "ehr", variables, block_size_mb=1)
    assert summary["rows_scanned"]["chartevents"] == twin["rows"]["chartevents"]
    assert summary["events"] > 0 and summary["stays"] == twin["icu_stays"]
    build_tasks(root, tmp_path / "ehr", tmp_path / "tasks", list(WINDOWS), WINDOWS, 1002,
                {"train": 0.7, "val": 0.1, "test": 0.2})
    for task in WINDOWS:
        labels = pd.read_parquet(tmp_path / "tasks" / task / "labels.parquet")
        assert len(labels) > 0
        assert labels.groupby("subject_id")["split"].nunique().max() == 1
        build_tensors(tmp_path / "ehr" / "events.parquet", tmp_path / "tasks" / task / "labels.parquet",
                      tmp_path / "tensors" / task, variables)
        values = np.load(tmp_path / "tensors" / task / "values.npy")
        index = pd.read_parquet(tmp_path / "tensors" / task / "index.parquet")
        assert values.shape == (index["length"].sum(), 76) and np.isfinite(values).all()
        masks = values[:, -17:].astype(np.float32)
        assert masks.sum() > 0 and set(np.unique(masks)) <= {0.0, 1.0}
        flow = json.loads((tmp_path / "tasks" / task / "cohort.json").read_text())
        assert flow["final"] == len(labels) == len(index)
