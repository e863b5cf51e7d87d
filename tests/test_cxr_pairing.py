"""pair_cxr: view and window rules, latest image per stay, StudyTime parsing, counts, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from data_prep.cxr.metadata import read_metadata, study_datetime
from data_prep.cxr.pair_task import pair_task
from data_prep.cxr.pairing import PAIR_COLUMNS, pair_stays
from data_prep.errors import PipelineInputError
from data_prep.schemas import CXR_METADATA

INTIME = pd.Timestamp("2150-01-01 10:00:00")
WINDOW_END = pd.Timestamp("2150-01-03 10:00:00")


def _labels() -> pd.DataFrame:
    """Four stays: 1 (several images), 2 (only bad views / out of window), 3 (no images), 4 (edge)."""
    return pd.DataFrame({
        "subject_id": [10001, 10002, 10003, 10004], "hadm_id": [1, 2, 3, 4],
        "stay_id": [301, 302, 303, 304], "split": ["train", "val", "test", "train"],
        "intime": [INTIME] * 4, "window_end": [WINDOW_END] * 4, "sex": ["M", "F", "M", "F"],
        "age": [60.0, 70.0, 80.0, 50.0], "in_hospital_mortality": [0.0, 1.0, 0.0, 1.0]})


def _image(dicom, subject, view, date, time, study=50000000):
    row = dict.fromkeys(CXR_METADATA.column_names, "")
    row.update(dicom_id=dicom, subject_id=subject, study_id=study, ViewPosition=view,
               Rows=3000, Columns=2500, StudyDate=date, StudyTime=time)
    return row


def _metadata_rows() -> list[dict]:
    return [
        _image("a-early", 10001, "AP", 20150101, 120000.0, 50000001),
        _image("a-latest", 10001, "AP", 20150102, 235959.5, 50000002),
        _image("a-lateral-later", 10001, "LATERAL", 20150103, 90000, 50000003),
        _image("a-pa-later", 10001, "PA", 20150103, 90000, 50000003),
        _image("a-after-window", 10001, "AP", 20150103, 100000.001, 50000004),
        _image("b-before-intime", 10002, "AP", 20150101, 95959.999, 50000005),
        _image("b-lateral", 10002, "LATERAL", 20150101, 120000, 50000006),
        _image("d-tie-a", 10004, "AP", 20150101, 100000, 50000007),
        _image("d-tie-b", 10004, "AP", 20150101, 100000, 50000007),
        _image("d-at-window-end", 10004, "AP", 20150103, 100000, 50000008),
        _image("z-other-subject", 19999, "AP", 20150102, 100000, 50000009),
    ]


def _shift_years(rows: list[dict]) -> list[dict]:
    """Our labels live in 2150 (MIMIC's shifted years); write the metadata dates there too."""
    for row in rows:
        row["StudyDate"] = int(row["StudyDate"]) + 135_0000
    return rows


@pytest.fixture()
def cxr_root(tmp_path):
    root = tmp_path / "mimic-cxr-jpg"
    root.mkdir()
    pd.DataFrame(_shift_years(_metadata_rows()), columns=CXR_METADATA.column_names).to_csv(
        root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    return root


def test_study_time_parsing_handles_lost_leading_zeros_and_fractions():
    dates = pd.Series([20180523, 20180523, 20180523, 20180523, 20180523, 20181332, 20180523.5])
    times = pd.Series([91512.123, 5.5, 235959.0, 246000.0, float("nan"), 120000, 120000])
    parsed = study_datetime(dates, times)
    assert parsed.iloc[0] == pd.Timestamp("2018-05-23 09:15:12.123")
    assert parsed.iloc[1] == pd.Timestamp("2018-05-23 00:00:05.5")
    assert parsed.iloc[2] == pd.Timestamp("2018-05-23 23:59:59")
    assert parsed.iloc[3:].isna().all()   # minute 60, no time, month 13, fractional date


def test_pairing_rules(cxr_root):
    pairs, counts = pair_stays(_labels(), read_metadata(cxr_root), views=["AP"])
    assert list(pairs.columns) == PAIR_COLUMNS
    chosen = dict(zip(pairs["stay_id"], pairs["dicom_id"], strict=True))
    # latest AP image inside the window; later lateral/PA and after-window images are ignored
    assert chosen[301] == "a-latest"
    # only an image 1 ms before intime and a lateral one: no pair
    assert pd.isna(chosen[302])
    assert pd.isna(chosen[303])
    # the image exactly at window_end is inside (edges inclusive)
    assert chosen[304] == "d-at-window-end"
    assert pairs["has_cxr"].tolist() == [True, False, False, True]
    row = pairs.set_index("stay_id").loc[301]
    assert row["image_relpath"] == "files/p10/p10001/s50000002/a-latest.jpg"
    assert row["study_id"] == 50000002
    assert row["study_datetime"] == pd.Timestamp("2150-01-02 23:59:59.5")
    assert counts["images_removed_view"] == 3  # 1 PA + 2 LATERAL of cohort subjects
    assert counts["images_removed_window"] == 2        # a-after-window, b-before-intime
    assert counts["images_of_cohort_subjects"] == 10
    assert counts["stays"]["train"] == {"with_cxr": 2, "without_cxr": 0}
    assert counts["stays"]["val"] == {"with_cxr": 0, "without_cxr": 1}
    assert counts["stays"]["all"] == {"with_cxr": 2, "without_cxr": 2}


def test_window_start_is_inclusive_and_ties_break_by_dicom_id(cxr_root):
    labels = _labels()
    labels.loc[labels["stay_id"] == 304, "window_end"] = pd.Timestamp("2150-01-02 00:00:00")
    pairs, _ = pair_stays(labels, read_metadata(cxr_root), views=["AP"])
    # two images exactly at intime: the larger dicom_id wins, whatever the file order
    assert pairs.set_index("stay_id").loc[304, "dicom_id"] == "d-tie-b"
    reversed_meta = read_metadata(cxr_root).iloc[::-1]
    again, _ = pair_stays(labels, reversed_meta, views=["AP"])
    pd.testing.assert_frame_equal(pairs, again)


def test_views_are_configurable(cxr_root):
    pairs, counts = pair_stays(_labels(), read_metadata(cxr_root), views=["AP", "PA", "LATERAL"])
    chosen = pairs.set_index("stay_id")["dicom_id"]
    assert chosen[301] == "a-pa-later"   # same time as the lateral; larger dicom_id
    assert chosen[302] == "b-lateral"
    assert counts["images_removed_view"] == 0


def test_pair_task_writes_outputs_and_cross_checks(cxr_root, tmp_path):
    labels_file = tmp_path / "labels.parquet"
    _labels().to_parquet(labels_file)
    pd.DataFrame({"dicom_id": ["a-latest"], "study_id": [50000002], "subject_id": [10001],
                  "split": ["test"]}).to_csv(cxr_root / "mimic-cxr-2.0.0-split.csv", index=False)
    pairs_file, counts_file = tmp_path / "out" / "pairs_t.parquet", tmp_path / "out" / "counts.json"
    pair_task(labels_file, cxr_root, ["AP"], pairs_file, counts_file, task="t")
    pairs = pd.read_parquet(pairs_file)
    assert len(pairs) == 4 and pairs["has_cxr"].sum() == 2
    counts = json.loads(counts_file.read_text())
    assert counts["cross_checks"]["chosen_missing_from_cxr_split_table"] == 1
    assert counts["cross_checks"]["chosen_by_ehr_and_cxr_split"] == {"train/test": 1}


def test_missing_metadata_column_is_one_line_error(tmp_path):
    root = tmp_path / "cxr"
    root.mkdir()
    pd.DataFrame(_metadata_rows()).drop(columns=["ViewPosition"]).to_csv(
        root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    with pytest.raises(PipelineInputError, match="missing column 'ViewPosition'"):
        read_metadata(root)
    with pytest.raises(PipelineInputError, match="file not found"):
        read_metadata(tmp_path / "nowhere")


def test_stage_cli_reports_missing_labels_in_one_line(tmp_path, repo_root):
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.pair_cxr", "--task", "in_hospital_mortality",
         "--params", str(repo_root / "params.yaml"), f"data.interim_dir={tmp_path}"],
        capture_output=True, text=True, cwd=repo_root)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "run `dvc repro build_tasks`" in result.stderr
