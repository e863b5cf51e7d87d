"""The column specification of every raw table, in one place.

The synthetic generator writes exactly these columns, in this order, and the extraction
stages validate real MIMIC files against them, so the twin and the real data cannot drift
apart. Column names and order follow MIMIC-IV v2.2 and MIMIC-CXR-JPG 2.0.0.

Types are the ones the pipeline reads with (pyarrow); timestamps are read as strings in
MIMIC's `YYYY-MM-DD HH:MM:SS` format and parsed explicitly, so a malformed value can be
reported by column rather than silently becoming null.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from data_prep.errors import PipelineInputError

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class TableSpec:
    """A raw table: where it lives under its dataset root, and its columns in file order."""

    name: str
    relpath: str  # relative to the dataset root, without the .csv / .csv.gz suffix
    columns: tuple[tuple[str, pa.DataType], ...]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def column_types(self) -> dict[str, pa.DataType]:
        return dict(self.columns)

    def locate(self, root: str | Path) -> Path:
        """The table's file under `root`, accepting .csv.gz or .csv (both MIMIC releases exist)."""
        for suffix in (".csv.gz", ".csv"):
            candidate = Path(root) / f"{self.relpath}{suffix}"
            if candidate.is_file():
                return candidate
        raise PipelineInputError(
            f"{Path(root) / self.relpath}.csv.gz: file not found (expected MIMIC table "
            f"{self.name!r}, as .csv.gz or .csv)")

    def read_header(self, path: str | Path) -> list[str]:
        from data_prep.csvio import open_text, reading

        with reading(path), open_text(path) as handle:
            first = handle.readline().rstrip("\r\n")
        return [c.strip().strip('"') for c in first.split(",")] if first else []

    def validate_header(self, path: str | Path, required: list[str] | None = None) -> None:
        """Stop with one line if a required column is missing from the file's header."""
        header = self.read_header(path)
        for column in required or self.column_names:
            if column not in header:
                raise PipelineInputError(
                    f"{path}: missing column {column!r} (expected MIMIC {self.name} columns: "
                    f"{', '.join(self.column_names)})")


S, I64, I32, F64 = pa.string(), pa.int64(), pa.int32(), pa.float64()

PATIENTS = TableSpec("patients", "hosp/patients", (
    ("subject_id", I64), ("gender", S), ("anchor_age", I32), ("anchor_year", I32),
    ("anchor_year_group", S), ("dod", S)))

ADMISSIONS = TableSpec("admissions", "hosp/admissions", (
    ("subject_id", I64), ("hadm_id", I64), ("admittime", S), ("dischtime", S), ("deathtime", S),
    ("admission_type", S), ("admit_provider_id", S), ("admission_location", S),
    ("discharge_location", S), ("insurance", S), ("language", S), ("marital_status", S),
    ("race", S), ("edregtime", S), ("edouttime", S), ("hospital_expire_flag", I32)))

DIAGNOSES_ICD = TableSpec("diagnoses_icd", "hosp/diagnoses_icd", (
    ("subject_id", I64), ("hadm_id", I64), ("seq_num", I32), ("icd_code", S), ("icd_version", I32)))

D_ICD_DIAGNOSES = TableSpec("d_icd_diagnoses", "hosp/d_icd_diagnoses", (
    ("icd_code", S), ("icd_version", I32), ("long_title", S)))

LABEVENTS = TableSpec("labevents", "hosp/labevents", (
    ("labevent_id", I64), ("subject_id", I64), ("hadm_id", I64), ("specimen_id", I64),
    ("itemid", I32), ("order_provider_id", S), ("charttime", S), ("storetime", S), ("value", S),
    ("valuenum", F64), ("valueuom", S), ("ref_range_lower", F64), ("ref_range_upper", F64),
    ("flag", S), ("priority", S), ("comments", S)))

D_LABITEMS = TableSpec("d_labitems", "hosp/d_labitems", (
    ("itemid", I32), ("label", S), ("fluid", S), ("category", S)))

ICUSTAYS = TableSpec("icustays", "icu/icustays", (
    ("subject_id", I64), ("hadm_id", I64), ("stay_id", I64), ("first_careunit", S),
    ("last_careunit", S), ("intime", S), ("outtime", S), ("los", F64)))

CHARTEVENTS = TableSpec("chartevents", "icu/chartevents", (
    ("subject_id", I64), ("hadm_id", I64), ("stay_id", I64), ("caregiver_id", I64),
    ("charttime", S), ("storetime", S), ("itemid", I32), ("value", S), ("valuenum", F64),
    ("valueuom", S), ("warning", I32)))

D_ITEMS = TableSpec("d_items", "icu/d_items", (
    ("itemid", I32), ("label", S), ("abbreviation", S), ("linksto", S), ("category", S),
    ("unitname", S), ("param_type", S), ("lownormalvalue", F64), ("highnormalvalue", F64)))

OUTPUTEVENTS = TableSpec("outputevents", "icu/outputevents", (
    ("subject_id", I64), ("hadm_id", I64), ("stay_id", I64), ("caregiver_id", I64),
    ("charttime", S), ("storetime", S), ("itemid", I32), ("value", F64), ("valueuom", S)))

MIMIC_IV_TABLES: dict[str, TableSpec] = {t.name: t for t in (
    PATIENTS, ADMISSIONS, DIAGNOSES_ICD, D_ICD_DIAGNOSES, LABEVENTS, D_LABITEMS,
    ICUSTAYS, CHARTEVENTS, D_ITEMS, OUTPUTEVENTS)}

CHEXPERT_LABELS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion",
    "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices")

CXR_METADATA = TableSpec("cxr_metadata", "mimic-cxr-2.0.0-metadata", (
    ("dicom_id", S), ("subject_id", I64), ("study_id", I64),
    ("PerformedProcedureStepDescription", S), ("ViewPosition", S), ("Rows", I32),
    ("Columns", I32), ("StudyDate", I64), ("StudyTime", F64),
    ("ProcedureCodeSequence_CodeMeaning", S), ("ViewCodeSequence_CodeMeaning", S),
    ("PatientOrientationCodeSequence_CodeMeaning", S)))

CXR_SPLIT = TableSpec("cxr_split", "mimic-cxr-2.0.0-split", (
    ("dicom_id", S), ("study_id", I64), ("subject_id", I64), ("split", S)))

CXR_CHEXPERT = TableSpec("cxr_chexpert", "mimic-cxr-2.0.0-chexpert", (
    ("subject_id", I64), ("study_id", I64), *((label, F64) for label in CHEXPERT_LABELS)))

MIMIC_CXR_TABLES: dict[str, TableSpec] = {t.name: t for t in (CXR_METADATA, CXR_SPLIT, CXR_CHEXPERT)}


def cxr_image_relpath(subject_id: int, study_id: int, dicom_id: str) -> str:
    """MIMIC-CXR-JPG's layout: files/p<first two digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg."""
    subject = str(int(subject_id))
    return f"files/p{subject[:2]}/p{subject}/s{int(study_id)}/{dicom_id}.jpg"
