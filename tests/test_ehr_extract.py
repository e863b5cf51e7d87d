"""extract_ehr on a hand-made MIMIC root: every kept, converted and dropped row is known."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from ehr_tables import CHART_ROWS, write_table, write_tiny_mimic

from data_prep.ehr.extract import extract_ehr
from data_prep.ehr.variables import load_variable_map
from data_prep.errors import PipelineInputError
from data_prep.schemas import CHARTEVENTS, LABEVENTS


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    root = write_tiny_mimic(tmp_path_factory.mktemp("mimic"))
    out = tmp_path_factory.mktemp("interim") / "ehr"
    summary = extract_ehr(root, out, load_variable_map("medfuse"), block_size_mb=1, sort_buckets=3)
    return out, summary


def stay_events(out, stay_id):
    events = pd.read_parquet(out / "events.parquet")
    return events[events["stay_id"] == stay_id].reset_index(drop=True)


def test_units_are_harmonized_and_counted(extracted):
    out, summary = extracted
    events = stay_events(out, 101).set_index("variable")
    assert events.loc["temperature", "value"] == pytest.approx(37.0, abs=1e-4)
    assert events.loc["weight", "value"] == pytest.approx(220 * 0.45359237, rel=1e-6)
    assert events.loc["height", "value"] == pytest.approx(70 * 2.54, rel=1e-6)
    assert sorted(events.loc["fraction_inspired_oxygen", "value"]) == pytest.approx([0.4, 0.5])
    assert summary["unit_conversions"] == {"fahrenheit_to_celsius": 1, "pound_to_kilogram": 1,
                                           "inch_to_centimeter": 1, "percent_to_fraction": 1}


def test_impossible_and_unparseable_values_are_dropped_and_counted(extracted):
    out, summary = extracted
    heart_rates = stay_events(out, 101).query("variable == 'heart_rate'")["value"].tolist()
    assert heart_rates == [80, 90, 100]  # 400 bpm dropped
    assert summary["impossible_values_dropped"]["heart_rate"] == 1
    assert summary["text_values_unparseable"]["respiratory_rate"] == 1   # "___"
    assert summary["text_values_unparseable"]["gcs_verbal_response"] == 1  # "To Speech?"
    assert summary["rows_kept"]["heart_rate"] == 9 and summary["rows_matched"]["heart_rate"] == 10


def test_text_and_numeric_columns(extracted):
    out, _ = extracted
    events = stay_events(out, 101).set_index("variable")
    assert events.loc["gcs_eye_opening", "text"] == "Spontaneously"
    assert events.loc["gcs_eye_opening", "value"] == 4
    assert events.loc["mean_blood_pressure", "value"] == 70  # empty `value`, numeric valuenum
    assert pd.isna(events.loc["heart_rate", "text"]).all()


def test_labs_attach_by_subject_and_time(extracted):
    out, summary = extracted
    glucose = stay_events(out, 101).query("variable == 'glucose'")
    assert glucose["hours"].tolist() == [1.5] and glucose["value"].tolist() == [150]
    assert stay_events(out, 201).query("variable == 'ph'")["value"].tolist() == pytest.approx([7.31])
    assert summary["rows_not_attached_to_a_stay"]["labevents"] == 1   # SpO2 after discharge
    assert summary["rows_scanned"] == {"chartevents": len(CHART_ROWS), "labevents": 4}


def test_events_and_stays_follow_the_contract(extracted):
    out, summary = extracted
    events = pq.read_table(out / "events.parquet")
    assert events.schema.names == ["stay_id", "hours", "variable", "value", "text"]
    assert str(events.schema.field("variable").type) == "dictionary<values=string, indices=int32, ordered=0>"
    frame = events.to_pandas()
    order = frame.sort_values(["stay_id", "hours"], kind="stable").index
    assert (order == frame.index).all()
    stays = pq.read_table(out / "stays.parquet")
    # parquet has no seconds unit: timestamp[s] is stored (and read back) as timestamp[ms]
    assert str(stays.schema.field("intime").type) in ("timestamp[s]", "timestamp[ms]")
    stays = stays.to_pandas().set_index("stay_id")
    assert stays.loc[101, "age"] == 61.0           # anchor_age 60 + (2150 - 2149)
    assert stays.loc[101, "los_hours"] == 72.0
    assert bool(stays.loc[201, "died_in_hospital"])   # dod within the admission, no deathtime
    assert bool(stays.loc[701, "died_in_hospital"])   # deathtime
    assert not bool(stays.loc[601, "died_in_hospital"])  # dod after discharge
    assert stays.loc[401, "stays_in_admission"] == 2
    assert stays.loc[101, "n_events"] == 12 and stays.loc[601, "n_events"] == 0
    assert summary["events"] == len(frame) == stays["n_events"].sum()
    assert sorted(p.name for p in out.iterdir()) == ["events.parquet", "extract_summary.json", "stays.parquet"]
    assert json.loads((out / "extract_summary.json").read_text())["events"] == len(frame)


def test_both_inflaters_and_plain_csv_give_the_same_events(tmp_path, extracted):
    out, _ = extracted
    plain = write_tiny_mimic(tmp_path / "plain", gz=False)
    extract_ehr(plain, tmp_path / "a", load_variable_map("medfuse"), inflater="pyarrow")
    reference = pd.read_parquet(out / "events.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "events.parquet"), reference)


def test_extended_map_adds_capillary_refill_and_gcs_total(tmp_path):
    root = write_tiny_mimic(tmp_path / "mimic")
    rows = CHART_ROWS + [
        {"subject_id": 2, "stay_id": 201, "charttime": "2150-03-01 03:00:00", "itemid": itemid, "value": text,
         "valuenum": num} for itemid, text, num in [(220739, "To Speech", "3"), (223901, "Obeys Commands", "6"),
                                                    (223900, "No Response-ETT", "0"),
                                                    (223951, "Abnormal >3 Seconds", "")]]
    write_table(root, CHARTEVENTS, rows)
    summary = extract_ehr(root, tmp_path / "out", load_variable_map("extended"))
    events = stay_events(tmp_path / "out", 201).set_index("variable")
    assert events.loc["gcs_total", "text"] == "10"   # 3 + 6 + 1 (intubated counts as 1)
    assert events.loc["capillary_refill_rate", "value"] == 1
    assert summary["rows_derived"] == {"gcs_total": 1}


def _assert_fails_cleanly(root, out, *fragments):
    with pytest.raises(PipelineInputError) as error:
        extract_ehr(root, out, load_variable_map("medfuse"))
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temp left


def test_missing_file_is_one_line(tmp_path):
    root = write_tiny_mimic(tmp_path / "mimic")
    (root / "hosp" / "labevents.csv.gz").unlink()
    _assert_fails_cleanly(root, tmp_path / "out", "labevents", "file not found")


def test_missing_column_is_one_line(tmp_path):
    root = write_tiny_mimic(tmp_path / "mimic")
    path = root / "icu" / "chartevents.csv.gz"
    with gzip.open(path, "rt") as handle:
        text = handle.read().replace("valuenum", "value_num", 1)
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    _assert_fails_cleanly(root, tmp_path / "out", str(path), "'valuenum'")


def test_bad_timestamp_is_one_line(tmp_path):
    root = write_tiny_mimic(tmp_path / "mimic")
    rows = [dict(row) for row in CHART_ROWS]
    rows[3]["charttime"] = "01/01/2150 01:00"
    write_table(root, CHARTEVENTS, rows)
    _assert_fails_cleanly(root, tmp_path / "out", "chartevents.csv.gz", "'charttime'", "01/01/2150 01:00",
                          "YYYY-MM-DD HH:MM:SS")


def test_wrong_type_is_one_line(tmp_path):
    root = write_tiny_mimic(tmp_path / "mimic")
    write_table(root, LABEVENTS, [{"labevent_id": 1, "subject_id": "one", "itemid": 50931,
                                   "charttime": "2150-01-01 01:30:00", "valuenum": "1"}])
    _assert_fails_cleanly(root, tmp_path / "out", "labevents.csv.gz", "'subject_id'", "int64")


def test_failure_keeps_the_previous_output(tmp_path, extracted):
    out, _ = extracted
    root = write_tiny_mimic(tmp_path / "mimic")
    (root / "hosp" / "labevents.csv.gz").unlink()
    before = np.array(pd.read_parquet(out / "events.parquet")["value"])
    with pytest.raises(PipelineInputError):
        extract_ehr(root, out, load_variable_map("medfuse"))
    np.testing.assert_array_equal(pd.read_parquet(out / "events.parquet")["value"], before)


def test_stopping_the_stream_early_stops_its_threads_and_closes_the_file(tmp_path):
    """A consumer that stops after one block (an error downstream) must not leave the parse and
    harmonize threads running or the gzip stream open."""
    import threading
    import time

    from data_prep.ehr.streaming import stream_filtered
    from data_prep.synthetic.settings import make_settings
    from data_prep.synthetic.twin import build_tables

    build_tables(tmp_path / "iv", tmp_path / "cxr", make_settings(n_subjects=10, seed=1, image_size=16))
    path = CHARTEVENTS.locate(tmp_path / "iv")
    items = list(load_variable_map("medfuse").items_of("chartevents"))
    prepared = []
    stream = stream_filtered(CHARTEVENTS, path, ["stay_id", "charttime", "itemid", "value", "valuenum"], items,
                             0.001, "isal_threaded", {}, prepare=lambda block: prepared.append(block) or block,
                             timestamp_columns=("charttime",))
    first = next(stream)
    assert first.num_rows > 0 and str(first.schema.field("charttime").type) == "timestamp[s]"
    stream.close()
    deadline = time.monotonic() + 5
    while any(t.name == "csv-prefetch" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "csv-prefetch"]
    total = sum(1 for _ in stream_filtered(CHARTEVENTS, path, ["itemid"], items, 0.001, "isal", {}))
    assert total > 50 and len(prepared) < 6, "the pipeline stays a few blocks ahead, not the whole file"
