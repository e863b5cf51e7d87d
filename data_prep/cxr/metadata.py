"""Reading MIMIC-CXR-JPG's metadata table into one row per image with a parsed study time.

StudyDate and StudyTime are numbers in the CSV (`20180523`, `91512.123` for 09:15:12.123:
leading zeros are lost), so they are parsed arithmetically rather than with a format string.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.csvio import first_bad_line, open_binary, quoted, reading, value_check
from data_prep.errors import PipelineInputError
from data_prep.schemas import CXR_METADATA, TableSpec

log = logging.getLogger(__name__)

METADATA_COLUMNS = ["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"]


def read_table(spec: TableSpec, root: str | Path, columns: list[str]) -> pd.DataFrame:
    """Locate a MIMIC-CXR table (.csv or .csv.gz), check its header, read only `columns`."""
    path = spec.locate(root)
    spec.validate_header(path, required=columns)
    dtypes = {name: "string" if str(kind) == "string" else "float64"
              for name, kind in spec.column_types.items() if name in columns}
    try:
        with reading(path), open_binary(path) as handle:
            # ids are read as float64 first so an empty cell gives a clear error below, not a crash
            frame = pd.read_csv(handle, usecols=columns, dtype=dtypes, keep_default_na=True)
    except ValueError:
        # pandas' message quotes the value (often an id); name the line and column instead
        for column in (c for c in columns if dtypes[c] != "string"):
            found = first_bad_line(path, column, value_check("number"))
            if found:
                raise PipelineInputError(f"{path}: line {found[0]}, column {column!r}: "
                                         f"{quoted(column, found[1])} is not a number") from None
        raise PipelineInputError(f"{path}: does not parse as CSV (expected numeric columns "
                                 f"{[c for c in columns if dtypes[c] != 'string']})") from None
    if frame.empty:
        raise PipelineInputError(f"{path}: a header but no data rows (expected the rows of MIMIC-CXR "
                                 f"table {spec.name!r})")
    for name in ("subject_id", "study_id"):
        if name in frame.columns:
            frame[name] = _to_int64(frame[name], path, name)
    return frame


def _to_int64(column: pd.Series, path: Path, name: str) -> pd.Series:
    bad = column.isna() | (column != np.floor(column))
    if bad.any():
        raise PipelineInputError(f"{path}: column {name!r} has {int(bad.sum())} empty or non-integer "
                                 f"values (expected integer ids)")
    return column.astype("int64")


def study_datetime(study_date: pd.Series, study_time: pd.Series) -> pd.Series:
    """Combine StudyDate (YYYYMMDD) and StudyTime (HHMMSS.fff as a number) into timestamps.

    Invalid or missing parts give NaT; the caller counts and drops those rows.
    """
    day = pd.to_numeric(study_date, errors="coerce").astype("float64")
    day = day.where(day == np.floor(day))  # a fractional "date" is invalid, not rounded
    date = pd.to_datetime(day.astype("Int64").astype("string"), format="%Y%m%d", errors="coerce")
    time = pd.to_numeric(study_time, errors="coerce").to_numpy(dtype="float64")
    whole = np.floor(time)
    hours, minutes, seconds = whole // 10000, (whole // 100) % 100, whole % 100
    micros = np.round((time - whole) * 1e6)
    valid = (time >= 0) & (hours < 24) & (minutes < 60) & (seconds < 60)
    offset_us = np.where(valid, ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + micros, np.nan)
    offset = pd.to_timedelta(pd.Series(offset_us, index=study_date.index), unit="us")
    return (date + offset).astype("datetime64[us]")


def image_relpaths(frame: pd.DataFrame) -> pd.Series:
    """Vectorized `schemas.cxr_image_relpath`: files/p<2 digits>/p<subject>/s<study>/<dicom>.jpg."""
    subject = frame["subject_id"].astype("int64").astype("string")
    study = frame["study_id"].astype("int64").astype("string")
    return ("files/p" + subject.str[:2] + "/p" + subject + "/s" + study + "/"
            + frame["dicom_id"].astype("string") + ".jpg")


def read_metadata(root: str | Path) -> pd.DataFrame:
    """The metadata table with `study_datetime` (NaT where StudyDate/StudyTime do not parse)."""
    frame = read_table(CXR_METADATA, root, METADATA_COLUMNS)
    frame["study_datetime"] = study_datetime(frame["StudyDate"], frame["StudyTime"])
    return frame.drop(columns=["StudyDate", "StudyTime"])
