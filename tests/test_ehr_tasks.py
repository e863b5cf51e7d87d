"""build_tasks on the hand-made root: cohort flow, labels from both ICD versions, splits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ehr_tables import write_tiny_mimic

from data_prep.ehr.cohorts import TaskWindow, apply_rules, cohort_rules
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
    # (valid times); ICU transfer; two stays left in one admission; minor; no events; 24 h stay;
    # (all have early events): the recipe's order
    assert removed == [(0, 8), (1, 7), (2, 5), (1, 4), (1, 3), (1, 2), (0, 2)]
    assert [step["rule"] for step in flow["steps"]][1:4] == [
        "no ICU transfer (first_careunit == last_careunit)", "exactly one ICU stay left in the admission",
        "age >= 18 at ICU admission"]
    assert flow["final"] == 2 and sum(flow["splits"].values()) == 2
    pheno = json.loads((tasks / "phenotyping" / "cohort.json").read_text())
    assert pheno["final"] == 3 and pheno["steps"][5]["removed"] == 0


def _stays(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"subject_id": np.arange(n), "hadm_id": np.arange(n), "stay_id": np.arange(100, 100 + n),
            "first_careunit": ["MICU"] * n, "last_careunit": ["MICU"] * n, "age": [60.0] * n,
            "n_events": [5] * n, "los_hours": [72.0] * n, "first_event_hours": [1.0] * n,
            "intime": pd.to_datetime(["2150-01-01"] * n), "outtime": pd.to_datetime(["2150-01-04"] * n)}
    return pd.DataFrame({**base, **columns})


def test_a_transfer_stay_does_not_remove_the_other_stay_of_its_admission():
    """Recipe order: transfers are removed first, then admissions with exactly one remaining
    stay are kept (the old order dropped stay 101 because its admission also held transfer 100)."""
    stays = _stays(hadm_id=[7, 7, 8, 8], last_careunit=["SICU", "MICU", "MICU", "MICU"])
    cohort, steps = apply_rules(stays, cohort_rules(WINDOWS["phenotyping"]))
    assert cohort["stay_id"].tolist() == [101]
    assert [(s["removed"], s["remaining"]) for s in steps[1:3]] == [(1, 3), (2, 1)]


def test_intime_after_outtime_is_its_own_rule_not_a_short_stay():
    stays = _stays(intime=pd.to_datetime(["2150-01-01", "2150-01-05", "2150-01-01"]),
                   outtime=pd.to_datetime(["2150-01-04", "2150-01-04", pd.NaT]), los_hours=[72.0, -24.0, np.nan])
    cohort, steps = apply_rules(stays, cohort_rules(WINDOWS["in_hospital_mortality"]))
    assert steps[0] == {"rule": "valid ICU times (intime <= outtime)", "removed": 2, "remaining": 1}
    assert next(s for s in steps if s["rule"].startswith("length of stay"))["removed"] == 0
    assert cohort["stay_id"].tolist() == [100]


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
