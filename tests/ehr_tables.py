"""A hand-made MIMIC-IV root for the EHR tests: a few stays whose every expected number is known.

Written with the column specs of data_prep/schemas.py, so the files look like MIMIC's.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from data_prep.schemas import (
    ADMISSIONS,
    CHARTEVENTS,
    DIAGNOSES_ICD,
    ICUSTAYS,
    LABEVENTS,
    PATIENTS,
    TableSpec,
)


def write_table(root: Path, spec: TableSpec, rows: list[dict], gz: bool = True) -> Path:
    """Write `rows` (missing columns empty) under root/<relpath>.csv[.gz] in the spec's column order."""
    path = root / f"{spec.relpath}.csv{'.gz' if gz else ''}"
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=spec.column_names)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in spec.column_names})
    return path


def chart(stay: int, subject: int, time: str, itemid: int, value: str, valuenum: str = "") -> dict:
    return {"subject_id": subject, "hadm_id": subject * 10 + 1, "stay_id": stay, "charttime": time,
            "storetime": time, "itemid": itemid, "value": value, "valuenum": valuenum}


# stay_id -> (subject, hadm, first unit, last unit, intime, outtime)
STAYS = {
    101: (1, 11, "MICU", "MICU", "2150-01-01 00:00:00", "2150-01-04 00:00:00"),  # 72 h, both tasks
    201: (2, 21, "SICU", "SICU", "2150-03-01 00:00:00", "2150-03-04 00:00:00"),  # died by dod
    301: (3, 31, "MICU", "MICU", "2150-01-01 00:00:00", "2150-01-03 00:00:00"),  # age 17
    401: (4, 41, "MICU", "MICU", "2150-01-01 00:00:00", "2150-01-03 00:00:00"),  # two stays in hadm 41
    402: (4, 41, "MICU", "MICU", "2150-01-05 00:00:00", "2150-01-08 00:00:00"),
    501: (5, 51, "MICU", "SICU", "2150-01-01 00:00:00", "2150-01-04 00:00:00"),  # ICU transfer
    601: (6, 61, "MICU", "MICU", "2150-01-01 00:00:00", "2150-01-04 00:00:00"),  # no events
    701: (7, 71, "CCU", "CCU", "2150-05-01 00:00:00", "2150-05-02 00:00:00"),    # 24 h, died (deathtime)
}
PATIENT_ROWS = [
    {"subject_id": 1, "gender": "M", "anchor_age": 60, "anchor_year": 2149, "anchor_year_group": "2008 - 2010"},
    {"subject_id": 2, "gender": "F", "anchor_age": 70, "anchor_year": 2150, "dod": "2150-03-05"},
    {"subject_id": 3, "gender": "M", "anchor_age": 17, "anchor_year": 2150},
    {"subject_id": 4, "gender": "F", "anchor_age": 50, "anchor_year": 2150},
    {"subject_id": 5, "gender": "M", "anchor_age": 40, "anchor_year": 2150},
    {"subject_id": 6, "gender": "F", "anchor_age": 45, "anchor_year": 2150, "dod": "2151-01-01"},
    {"subject_id": 7, "gender": "M", "anchor_age": 80, "anchor_year": 2150},
]
ADMISSION_ROWS = [
    {"subject_id": 1, "hadm_id": 11, "admittime": "2149-12-31 20:00:00", "dischtime": "2150-01-06 10:00:00"},
    {"subject_id": 2, "hadm_id": 21, "admittime": "2150-02-28 08:00:00", "dischtime": "2150-03-05 12:00:00"},
    {"subject_id": 3, "hadm_id": 31, "admittime": "2150-01-01 00:00:00", "dischtime": "2150-01-04 00:00:00"},
    {"subject_id": 4, "hadm_id": 41, "admittime": "2150-01-01 00:00:00", "dischtime": "2150-01-09 00:00:00"},
    {"subject_id": 5, "hadm_id": 51, "admittime": "2150-01-01 00:00:00", "dischtime": "2150-01-05 00:00:00"},
    {"subject_id": 6, "hadm_id": 61, "admittime": "2150-01-01 00:00:00", "dischtime": "2150-01-05 00:00:00"},
    {"subject_id": 7, "hadm_id": 71, "admittime": "2150-05-01 00:00:00", "dischtime": "2150-05-02 06:00:00",
     "deathtime": "2150-05-02 06:00:00"},
]
CHART_ROWS = [
    # stay 101, hour bin 0: HR 80 then 90 (last wins), eye text without number, temperature in F
    chart(101, 1, "2150-01-01 00:30:00", 220045, "80", "80"),
    chart(101, 1, "2150-01-01 00:54:00", 220045, "90", "90"),
    chart(101, 1, "2150-01-01 00:12:00", 220739, "Spontaneously", "4"),
    chart(101, 1, "2150-01-01 01:00:00", 223761, "98.6", "98.6"),     # F -> 37.0 C, bin 1
    chart(101, 1, "2150-01-01 02:12:00", 220045, "100", "100"),       # bin 2
    chart(101, 1, "2150-01-01 02:30:00", 220045, "400", "400"),       # impossible, dropped
    chart(101, 1, "2150-01-01 03:00:00", 223835, "50", "50"),         # FiO2 % -> 0.5, bin 3
    chart(101, 1, "2150-01-01 03:10:00", 223835, "0.4", "0.4"),       # already a fraction
    chart(101, 1, "2150-01-01 03:20:00", 226531, "220", "220"),       # lb -> 99.79 kg
    chart(101, 1, "2150-01-01 03:30:00", 226707, "70", "70"),         # in -> 177.8 cm
    chart(101, 1, "2150-01-01 04:00:00", 223900, "To Speech?", ""),   # unparseable text, dropped
    chart(101, 1, "2150-01-01 04:00:00", 223901, "Localizes Pain", "5"),
    chart(101, 1, "2150-01-01 05:00:00", 220210, "___", ""),          # unparseable number, dropped
    chart(101, 1, "2150-01-01 05:00:00", 220181, "", "70"),           # numeric from valuenum
    chart(101, 1, "2150-01-01 06:00:00", 227442, "4.1", "4.1"),       # itemid not mapped
    chart(201, 2, "2150-03-01 01:00:00", 220045, "110", "110"),
    chart(301, 3, "2150-01-01 01:00:00", 220045, "110", "110"),
    chart(401, 4, "2150-01-01 01:00:00", 220045, "110", "110"),
    chart(402, 4, "2150-01-05 01:00:00", 220045, "110", "110"),
    chart(501, 5, "2150-01-01 01:00:00", 220045, "110", "110"),
    chart(701, 7, "2150-05-01 02:00:00", 220045, "120", "120"),
]
LAB_ROWS = [
    # hadm_id empty: attached to stay 101 by subject and time (hour 1.5 -> bin 1)
    {"labevent_id": 1, "subject_id": 1, "itemid": 50931, "charttime": "2150-01-01 01:30:00",
     "value": "150.00", "valuenum": "150.0"},
    # outside every stay of subject 1: not attached
    {"labevent_id": 2, "subject_id": 1, "itemid": 50817, "charttime": "2150-01-06 01:30:00",
     "value": "95", "valuenum": "95"},
    {"labevent_id": 3, "subject_id": 2, "hadm_id": 21, "itemid": 50820, "charttime": "2150-03-01 02:00:00",
     "value": "7.31", "valuenum": "7.31"},
    {"labevent_id": 4, "subject_id": 2, "itemid": 51221, "charttime": "2150-03-01 02:00:00",
     "value": "30", "valuenum": "30"},                                 # not mapped
]
DIAGNOSIS_ROWS = [
    {"subject_id": 1, "hadm_id": 11, "seq_num": 1, "icd_code": "4280", "icd_version": 9},    # CHF (ICD-9)
    {"subject_id": 2, "hadm_id": 21, "seq_num": 1, "icd_code": "I5020", "icd_version": 10},  # CHF (ICD-10)
    {"subject_id": 2, "hadm_id": 21, "seq_num": 2, "icd_code": "N179", "icd_version": 10},   # renal failure
    {"subject_id": 7, "hadm_id": 71, "seq_num": 1, "icd_code": "5849", "icd_version": 9},    # renal failure
    {"subject_id": 7, "hadm_id": 71, "seq_num": 2, "icd_code": "4280", "icd_version": 10},   # no such ICD-10
]


def write_tiny_mimic(root: Path, gz: bool = True) -> Path:
    stays = [{"subject_id": s, "hadm_id": h, "stay_id": stay, "first_careunit": f, "last_careunit": last,
              "intime": i, "outtime": o, "los": 1.0} for stay, (s, h, f, last, i, o) in STAYS.items()]
    write_table(root, ICUSTAYS, stays, gz)
    write_table(root, PATIENTS, PATIENT_ROWS, gz)
    write_table(root, ADMISSIONS, ADMISSION_ROWS, gz)
    write_table(root, CHARTEVENTS, CHART_ROWS, gz)
    write_table(root, LABEVENTS, LAB_ROWS, gz)
    write_table(root, DIAGNOSES_ICD, DIAGNOSIS_ROWS, gz)
    return root
