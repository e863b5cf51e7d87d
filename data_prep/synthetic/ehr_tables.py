"""The MIMIC-IV tables other than chartevents, as pyarrow tables in schemas.py's column order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from data_prep import schemas
from data_prep.synthetic import catalog, formats
from data_prep.synthetic.latent import HOUR, PHENOTYPE_RISK, YEAR_GROUPS, Cohort


def _table(spec: schemas.TableSpec, columns: dict[str, pa.Array]) -> pa.Table:
    return pa.table({name: columns[name] for name in spec.column_names})


def patients(cohort: Cohort) -> pa.Table:
    s = cohort.subjects
    return _table(schemas.PATIENTS, {
        "subject_id": formats.integers(s["subject_id"]),
        "gender": formats.strings(s["gender"]),
        "anchor_age": pa.array(s["anchor_age"].to_numpy(), pa.int32()),
        "anchor_year": pa.array(s["anchor_year"].to_numpy(), pa.int32()),
        "anchor_year_group": formats.strings(np.asarray(YEAR_GROUPS)[s["year_group"].to_numpy()]),
        "dod": formats.dates(s["dod"].to_numpy(), missing=s["dod"].to_numpy() < 0),
    })


def admissions(cohort: Cohort, rng: np.random.Generator) -> pa.Table:
    a = cohort.admissions.sort_values(["subject_id", "admittime"], kind="stable")
    n = len(a)
    emergency = rng.random(n) < 0.7
    edreg = a["admittime"].to_numpy() - (rng.uniform(1, 10, n) * HOUR).astype(np.int64)
    edreg -= edreg % 60
    edout = a["admittime"].to_numpy() + (rng.uniform(0, 1, n) * HOUR).astype(np.int64)
    edout -= edout % 60
    died = a["died_in_hospital"].to_numpy()
    discharge = rng.choice(np.array(["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB"]), n)
    pick = lambda options: rng.choice(np.asarray(options, dtype=object), n)  # noqa: E731
    return _table(schemas.ADMISSIONS, {
        "subject_id": formats.integers(a["subject_id"]),
        "hadm_id": formats.integers(a["hadm_id"]),
        "admittime": formats.timestamps(a["admittime"]),
        "dischtime": formats.timestamps(a["dischtime"]),
        "deathtime": formats.timestamps(a["deathtime"], missing=~died),
        "admission_type": formats.strings(np.where(emergency, "EW EMER.", pick(["URGENT", "ELECTIVE", "OBSERVATION ADMIT"]))),
        "admit_provider_id": formats.strings(np.char.add("P", rng.integers(10000, 99999, n).astype(str)),
                                             missing=rng.random(n) < 0.05),
        "admission_location": formats.strings(np.where(emergency, "EMERGENCY ROOM", pick(["PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL"]))),
        "discharge_location": formats.strings(np.where(died, "DIED", discharge)),
        "insurance": formats.strings(pick(["Medicare", "Medicaid", "Other"])),
        "language": formats.strings(np.where(rng.random(n) < 0.9, "ENGLISH", "?")),
        "marital_status": formats.strings(pick(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED", ""]),
                                          missing=rng.random(n) < 0.05),
        "race": formats.strings(pick(["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN",
                                      "ASIAN - CHINESE", "OTHER", "UNKNOWN"])),
        "edregtime": formats.timestamps(edreg, missing=~emergency),
        "edouttime": formats.timestamps(edout, missing=~emergency),
        "hospital_expire_flag": pa.array(died.astype(np.int32), pa.int32()),
    })


def icustays(cohort: Cohort) -> pa.Table:
    s = cohort.stays.sort_values(["subject_id", "intime"], kind="stable")
    return _table(schemas.ICUSTAYS, {
        "subject_id": formats.integers(s["subject_id"]),
        "hadm_id": formats.integers(s["hadm_id"]),
        "stay_id": formats.integers(s["stay_id"]),
        "first_careunit": formats.strings(s["first_careunit"]),
        "last_careunit": formats.strings(s["last_careunit"]),
        "intime": formats.timestamps(s["intime"]),
        "outtime": formats.timestamps(s["outtime"]),
        "los": pa.array(np.round((s["outtime"] - s["intime"]).to_numpy() / 86400, 6)),
    })


CODED_FRACTION = 0.93  # a present condition is coded this often (label noise, as in real coding)


def diagnoses(cohort: Cohort, rng: np.random.Generator) -> tuple[pa.Table, pd.DataFrame]:
    """diagnoses_icd plus the per-admission truth of which phenotypes were coded."""
    a = cohort.admissions.sort_values(["subject_id", "admittime"], kind="stable").reset_index(drop=True)
    rows_adm, rows_code, rows_version = [], [], []
    coded = pd.DataFrame({"hadm_id": a["hadm_id"].to_numpy()})
    version = a["icd_version"].to_numpy()
    for name in PHENOTYPE_RISK:
        hit = a[name].to_numpy() & (rng.random(len(a)) < CODED_FRACTION)
        coded[name] = hit
        where = np.flatnonzero(hit)
        for v in (9, 10):
            sel = where[version[where] == v]
            codes = np.asarray(catalog.PHENOTYPE_CODES[name][v], dtype=object)
            rows_adm.append(sel)
            rows_code.append(codes[rng.integers(0, len(codes), sel.size)])
            rows_version.append(np.full(sel.size, v))
    n_irrelevant = rng.integers(1, 6, len(a))
    adm_idx = np.repeat(np.arange(len(a)), n_irrelevant)
    for v in (9, 10):
        sel = adm_idx[version[adm_idx] == v]
        codes = np.asarray(catalog.IRRELEVANT_CODES[v], dtype=object)
        rows_adm.append(sel)
        rows_code.append(codes[rng.integers(0, len(codes), sel.size)])
        rows_version.append(np.full(sel.size, v))
    frame = pd.DataFrame({"adm": np.concatenate(rows_adm), "icd_code": np.concatenate(rows_code),
                          "icd_version": np.concatenate(rows_version)})
    frame = frame.drop_duplicates(["adm", "icd_code"])
    frame["shuffle"] = rng.random(len(frame))
    frame = frame.sort_values(["adm", "shuffle"], kind="stable")
    frame["seq_num"] = frame.groupby("adm").cumcount() + 1
    table = _table(schemas.DIAGNOSES_ICD, {
        "subject_id": formats.integers(a["subject_id"].to_numpy()[frame["adm"]]),
        "hadm_id": formats.integers(a["hadm_id"].to_numpy()[frame["adm"]]),
        "seq_num": pa.array(frame["seq_num"].to_numpy(np.int32)),
        "icd_code": formats.strings(frame["icd_code"].to_numpy()),
        "icd_version": pa.array(frame["icd_version"].to_numpy(np.int32)),
    })
    return table, coded


def d_icd_diagnoses() -> pa.Table:
    rows = catalog.icd_dictionary()
    return _table(schemas.D_ICD_DIAGNOSES, {
        "icd_code": formats.strings(np.array([r[0] for r in rows], dtype=object)),
        "icd_version": pa.array([r[1] for r in rows], pa.int32()),
        "long_title": formats.strings(np.array([r[2] for r in rows], dtype=object)),
    })


def d_items() -> pa.Table:
    items = {**{k: (*v, "chartevents") for k, v in catalog.CHART_ITEMS.items()},
             **{k: (*v, "outputevents") for k, v in catalog.OUTPUT_ITEMS.items()}}
    ids = sorted(items)
    col = lambda i: np.array([items[k][i] for k in ids], dtype=object)  # noqa: E731
    unit = col(3)
    return _table(schemas.D_ITEMS, {
        "itemid": pa.array(ids, pa.int32()), "label": formats.strings(col(0)),
        "abbreviation": formats.strings(col(1)), "linksto": formats.strings(col(5)),
        "category": formats.strings(col(2)), "unitname": formats.strings(unit, missing=unit == ""),
        "param_type": formats.strings(col(4)),
        "lownormalvalue": formats.floats(np.full(len(ids), np.nan)),
        "highnormalvalue": formats.floats(np.full(len(ids), np.nan)),
    })


def d_labitems() -> pa.Table:
    ids = sorted(catalog.LAB_ITEMS)
    col = lambda i: np.array([catalog.LAB_ITEMS[k][i] for k in ids], dtype=object)  # noqa: E731
    return _table(schemas.D_LABITEMS, {
        "itemid": pa.array(ids, pa.int32()), "label": formats.strings(col(0)),
        "fluid": formats.strings(col(1)), "category": formats.strings(col(2)),
    })
