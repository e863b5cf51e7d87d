"""build_tasks on the hand-made root: cohort flow, labels from both ICD versions, splits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ehr_tables import write_tiny_mimic

from data_prep.ehr.cohorts import TaskWindow
from data_prep.ehr.extract import extract_ehr
from data_prep.ehr.phenotypes import phenotype_names
from data_prep.ehr.splits import assign_splits
from data_prep.ehr.tasks import build_tasks
from data_prep.ehr.variables import load_variable_map

WINDOWS = {"in_hospital_mortality": TaskWindow(18, 48, 48), "phenotyping": TaskWindow(18, 0, None)}
FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = write_tiny_mimic(tmp_path_factory.mktemp("mimic"))
    interim = tmp_path_factory.mktemp("interim")
    extract_ehr(root, interim / "ehr", load_variable_map("medfuse"))
    build_tasks(root, interim / "ehr", interim / "tasks", list(WINDOWS), WINDOWS, 1002, FRACTIONS)
    return interim / "tasks"


def test_cohort_flow_counts_every_rule(tasks):
    flow = json.loads((tasks / "in_hospital_mortality" / "cohort.json").read_text())
    removed = [(step["removed"], step["remaining"]) for step in flow["steps"]]
    # minor; two stays in one admission; ICU transfer; no events; 24 h stay; (all have early events)
    assert removed == [(1, 7), (2, 5), (1, 4), (1, 3), (1, 2), (0, 2)]
    assert flow["final"] == 2 and sum(flow["splits"].values()) == 2
    pheno = json.loads((tasks / "phenotyping" / "cohort.json").read_text())
    assert pheno["final"] == 3 and pheno["steps"][4]["removed"] == 0


def test_in_hospital_mortality_labels(tasks):
    labels = pd.read_parquet(tasks / "in_hospital_mortality" / "labels.parquet").set_index("stay_id")
    assert labels["in_hospital_mortality"].to_dict() == {101: 0.0, 201: 1.0}  # 201 died by dod only
    assert labels["in_hospital_mortality"].dtype == np.float32
    assert labels.loc[101, "window_end"] == pd.Timestamp("2150-01-03 00:00:00")
    assert labels.loc[201, "sex"] == "F" and labels.loc[101, "age"] == 61.0
    assert list(labels.columns[:7]) == ["subject_id", "hadm_id", "split", "intime", "window_end", "sex", "age"]


def test_phenotypes_from_icd9_and_icd10(tasks):
    labels = pd.read_parquet(tasks / "phenotyping" / "labels.parquet").set_index("stay_id")
    names = phenotype_names()
    assert len(names) == 25 and list(labels.columns[-25:]) == names
    chf, renal = "congestive_heart_failure_nonhypertensive", "acute_and_unspecified_renal_failure"
    assert labels.loc[101, chf] == 1 and labels.loc[101, renal] == 0   # ICD-9 4280
    assert labels.loc[201, chf] == 1 and labels.loc[201, renal] == 1   # ICD-10 I5020, N179
    assert labels.loc[701, renal] == 1 and labels.loc[701, chf] == 0   # "4280" as ICD-10 is no CHF
    assert labels.loc[701, "window_end"] == pd.Timestamp("2150-05-02 00:00:00")
    assert labels[names].to_numpy().sum() == 4


def test_splits_are_patient_level_and_proportional():
    subjects = np.repeat(np.arange(10_000, 14_000), 2)  # two stays per subject
    splits = assign_splits(subjects, seed=7, fractions=FRACTIONS)
    per_subject = pd.DataFrame({"subject": subjects, "split": splits}).groupby("subject")["split"].nunique()
    assert per_subject.max() == 1
    shares = pd.Series(splits).value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.03) and shares["test"] == pytest.approx(0.2, abs=0.03)
    assert set(assign_splits(subjects, seed=8, fractions=FRACTIONS)) == {"train", "val", "test"}
    assert (assign_splits(subjects, seed=8, fractions=FRACTIONS) != splits).any()


def test_adding_subjects_moves_nobody():
    before = np.arange(500, 900)
    after = np.concatenate([np.arange(100, 500), before, np.arange(900, 1300)])
    old = assign_splits(before, seed=1002, fractions=FRACTIONS)
    new = assign_splits(after, seed=1002, fractions=FRACTIONS)
    np.testing.assert_array_equal(new[400:800], old)
