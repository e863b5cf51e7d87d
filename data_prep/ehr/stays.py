"""One row per ICU stay with its admission and patient facts (stays.parquet of extract_ehr)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from data_prep.ehr.streaming import DATE_FORMAT, parse_timestamps, read_table
from data_prep.schemas import ADMISSIONS, ICUSTAYS, PATIENTS, TIMESTAMP_FORMAT, TableSpec

ICUSTAY_COLUMNS = ["subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime"]
ADMISSION_COLUMNS = ["hadm_id", "admittime", "dischtime", "deathtime"]
PATIENT_COLUMNS = ["subject_id", "gender", "anchor_age", "anchor_year", "dod"]
STAY_COLUMNS = ["subject_id", "hadm_id", "stay_id", "intime", "outtime", "admittime", "dischtime",
                "deathtime", "dod", "first_careunit", "last_careunit", "los_hours", "gender", "age",
                "died_in_hospital", "stays_in_admission"]


def load_stays(root: str | Path) -> pd.DataFrame:
    """Join icustays, admissions and patients; derive LOS, age at ICU admission and death in hospital.

    Age is anchor_age + year(intime) - anchor_year (MedFuse used anchor_age alone). Death in
    hospital: deathtime set, or dod within [admittime, dischtime] compared as dates, because
    dod carries no time of day.
    """
    icu = _read(ICUSTAYS, root, ICUSTAY_COLUMNS, ("intime", "outtime"))
    admissions = _read(ADMISSIONS, root, ADMISSION_COLUMNS, ("admittime", "dischtime", "deathtime"))
    patients = _read(PATIENTS, root, PATIENT_COLUMNS, ("dod",), formats=(TIMESTAMP_FORMAT, DATE_FORMAT))
    stays = (icu.merge(admissions, on="hadm_id", how="left", validate="many_to_one")
             .merge(patients, on="subject_id", how="left", validate="many_to_one"))
    stays["los_hours"] = (stays["outtime"] - stays["intime"]).dt.total_seconds() / 3600.0
    stays["age"] = (stays["anchor_age"] + stays["intime"].dt.year - stays["anchor_year"]).astype(np.float64)
    dod_day = stays["dod"].dt.floor("D")
    died_by_dod = ((dod_day >= stays["admittime"].dt.floor("D")) & (dod_day <= stays["dischtime"].dt.floor("D")))
    stays["died_in_hospital"] = (stays["deathtime"].notna() | died_by_dod.fillna(False)).astype(bool)
    stays["stays_in_admission"] = stays.groupby("hadm_id")["stay_id"].transform("size").astype(np.int64)
    return stays[STAY_COLUMNS].sort_values("stay_id", ignore_index=True)


def _read(spec: TableSpec, root: str | Path, columns: list[str], time_columns: tuple[str, ...],
          formats: tuple[str, ...] = (TIMESTAMP_FORMAT,)) -> pd.DataFrame:
    table = read_table(spec, root, columns)
    path = spec.locate(root)
    for column in time_columns:
        parsed = parse_timestamps(table.column(column), path, column, formats)
        table = table.set_column(table.schema.get_field_index(column), column, parsed)
    return table.to_pandas(timestamp_as_object=False, types_mapper={pa.string(): None}.get)
