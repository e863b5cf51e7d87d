"""The 25 benchmark phenotypes (data_prep/resources/phenotypes.yaml), keyed by (icd_version, code).

MedFuse keyed its map by code alone, so an ICD-10 code that happens to spell an ICD-9 code
would count; keying by version avoids that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from data_prep.ehr.variables import RESOURCES


def load_phenotypes(path: Path = RESOURCES / "phenotypes.yaml") -> list[dict]:
    return yaml.safe_load(path.read_text())["phenotypes"]


def phenotype_names(path: Path = RESOURCES / "phenotypes.yaml") -> list[str]:
    return [entry["name"] for entry in load_phenotypes(path)]


def code_table(path: Path = RESOURCES / "phenotypes.yaml") -> pd.DataFrame:
    """One row per (icd_version, icd_code, phenotype)."""
    rows = [(version, str(code), entry["name"]) for entry in load_phenotypes(path)
            for version in (9, 10) for code in entry[f"icd{version}"]]
    return pd.DataFrame(rows, columns=["icd_version", "icd_code", "phenotype"])


def phenotype_labels(hadm_ids: np.ndarray, diagnoses: pd.DataFrame,
                     path: Path = RESOURCES / "phenotypes.yaml") -> pd.DataFrame:
    """A 0/1 float32 frame [len(hadm_ids), 25]: any diagnosis of the admission in the group."""
    names = phenotype_names(path)
    codes = code_table(path)
    diagnoses = diagnoses.assign(icd_code=diagnoses["icd_code"].astype(str).str.strip(),
                                 icd_version=diagnoses["icd_version"].astype(int))
    hits = diagnoses.merge(codes, on=["icd_version", "icd_code"])[["hadm_id", "phenotype"]].drop_duplicates()
    wide = pd.crosstab(hits["hadm_id"], hits["phenotype"]).clip(upper=1)
    wide = wide.reindex(index=pd.Index(hadm_ids, name="hadm_id"), columns=names, fill_value=0).fillna(0)
    return wide.astype(np.float32).reset_index(drop=True)
