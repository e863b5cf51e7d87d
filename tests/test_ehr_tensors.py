"""The discretizer on hand-computed stays: last value per bin, imputation, masks, one-hot, norms."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data_prep.ehr.discretize import hourly_features, stay_lengths
from data_prep.ehr.tensors import build_tensors, stay_chunks
from data_prep.ehr.variables import load_variable_map

VARIABLES = load_variable_map("medfuse")
NAMES = VARIABLES.feature_names()


def events(*rows):
    return pd.DataFrame(rows, columns=["stay_id", "hours", "variable", "value", "text"])


def column(values, name):
    return values[:, NAMES.index(name)]


def test_layout_is_the_benchmark_76():
    assert len(NAMES) == 76
    assert sum(n.startswith("mask_") for n in NAMES) == 17
    assert sum("=" in n for n in NAMES) == 47
    assert NAMES[:3] == ["capillary_refill_rate=0.0", "capillary_refill_rate=1.0", "diastolic_blood_pressure"]


def test_last_value_in_bin_previous_then_normal_and_masks():
    stay = events((5, 0.1, "heart_rate", 80.0, None), (5, 0.9, "heart_rate", 90.0, None),
                  (5, 2.5, "heart_rate", 100.0, None), (5, 3.2, "heart_rate", 300.0, None),  # after the window
                  (5, -1.0, "glucose", 200.0, None), (5, 1.2, "glucose", 140.0, None))
    values = hourly_features(stay, np.array([5]), np.array([3]), VARIABLES)
    assert values.shape == (3, 76)
    np.testing.assert_array_equal(column(values, "heart_rate"), [90, 90, 100])
    np.testing.assert_array_equal(column(values, "mask_heart_rate"), [1, 0, 1])
    np.testing.assert_array_equal(column(values, "glucose"), [128, 140, 140])  # pre-ICU lab ignored
    np.testing.assert_array_equal(column(values, "mask_glucose"), [0, 1, 0])
    np.testing.assert_allclose(column(values, "temperature"), [36.6] * 3, rtol=1e-6)
    assert column(values, "mask_temperature").sum() == 0


def test_forward_fill_stops_at_the_stay_boundary():
    both = events((1, 0.5, "weight", 60.0, None), (2, 1.5, "respiratory_rate", 30.0, None))
    values = hourly_features(both, np.array([1, 2]), np.array([2, 2]), VARIABLES)
    np.testing.assert_array_equal(column(values, "weight"), [60, 60, 81, 81])
    np.testing.assert_array_equal(column(values, "respiratory_rate"), [19, 19, 19, 30])


def test_categoricals_are_one_hot_with_variant_strings_in_one_column():
    stay = events((3, 0.2, "gcs_eye_opening", 3.0, "To Speech"), (3, 1.4, "gcs_eye_opening", 3.0, "3 To speech"),
                  (3, 2.1, "gcs_verbal_response", 1.0, "No Response-ETT"),
                  (3, 2.2, "capillary_refill_rate", 1.0, "Abnormal >3 secs"))
    values = hourly_features(stay, np.array([3]), np.array([4]), VARIABLES)
    eye = values[:, [i for i, n in enumerate(NAMES) if n.startswith("gcs_eye_opening=")]]
    assert (eye.sum(axis=1) == 1).all()
    np.testing.assert_array_equal(column(values, "gcs_eye_opening=3 To speech"), [1, 1, 1, 1])
    assert column(values, "gcs_eye_opening=To Speech").sum() == 0
    np.testing.assert_array_equal(column(values, "gcs_verbal_response=5 Oriented"), [1, 1, 0, 0])
    np.testing.assert_array_equal(column(values, "gcs_verbal_response=1.0 ET/Trach"), [0, 0, 1, 1])
    np.testing.assert_array_equal(column(values, "capillary_refill_rate=1.0"), [0, 0, 1, 1])
    np.testing.assert_array_equal(column(values, "gcs_total=15"), [1, 1, 1, 1])  # never charted: normal
    np.testing.assert_array_equal(column(values, "mask_gcs_eye_opening"), [1, 1, 0, 0])


def test_bin_edges_follow_the_recipe():
    """int(t - eps): a value at exactly 48.0 h is in the last bin of a 48-hour window (floor(t)
    dropped it), one at 1.0 h closes bin 0, one at 0.0 h opens it."""
    stay = events((9, 0.0, "heart_rate", 70.0, None), (9, 1.0, "heart_rate", 75.0, None),
                  (9, 47.5, "glucose", 150.0, None), (9, 48.0, "glucose", 160.0, None),
                  (9, 48.001, "glucose", 999.0, None))
    values = hourly_features(stay, np.array([9]), np.array([48]), VARIABLES)
    assert column(values, "heart_rate")[0] == 75 and column(values, "mask_heart_rate")[1] == 0
    assert column(values, "glucose")[47] == 160


def test_phenotyping_window_ends_at_outtime_not_at_the_bin_edge():
    stay = events((4, 2.4, "heart_rate", 70.0, None), (4, 2.5, "heart_rate", 80.0, None),
                  (4, 2.7, "heart_rate", 90.0, None))  # after outtime (2.5 h), inside bin 2
    values = hourly_features(stay, np.array([4]), np.array([3]), VARIABLES, end_hours=np.array([2.5]))
    assert column(values, "heart_rate")[2] == 80


@pytest.mark.parametrize("order", [[0, 1], [1, 0]], ids=["file order", "reversed"])
def test_simultaneous_values_keep_the_larger_whatever_the_file_order(order):
    rows = [(6, 0.5, "heart_rate", 80.0, None), (6, 0.5, "heart_rate", 120.0, None)]
    gcs = [(6, 0.5, "gcs_motor_response", 6.0, "Obeys Commands"), (6, 0.5, "gcs_motor_response", 5.0, "Localizes Pain")]
    stay = events(*[rows[k] for k in order], *[gcs[k] for k in order])
    values = hourly_features(stay, np.array([6]), np.array([1]), VARIABLES)
    assert column(values, "heart_rate")[0] == 120
    assert column(values, "gcs_motor_response=6 Obeys Commands")[0] == 1


def test_stay_lengths_cover_the_window():
    intime = pd.Series(pd.to_datetime(["2150-01-01 00:00:00"] * 3))
    end = pd.Series(pd.to_datetime(["2150-01-03 00:00:00", "2150-01-01 05:30:00", "2150-01-01 00:00:00"]))
    np.testing.assert_array_equal(stay_lengths(intime, end, 1.0), [48, 6, 1])


def test_tensors_are_normalized_with_training_statistics_only(tmp_path):
    stays = pd.DataFrame({"stay_id": [1, 2, 3], "split": ["train", "train", "test"],
                          "intime": pd.to_datetime(["2150-01-01"] * 3),
                          "window_end": pd.to_datetime(["2150-01-01 02:00:00"] * 3)})
    stays.to_parquet(tmp_path / "labels.parquet")
    evts = events((1, 0.0, "heart_rate", 60.0, None), (2, 0.0, "heart_rate", 100.0, None),
                  (3, 0.0, "heart_rate", 1000.0, None))
    evts.to_parquet(tmp_path / "events.parquet")
    summary = build_tensors(tmp_path / "events.parquet", tmp_path / "labels.parquet", tmp_path / "out",
                            VARIABLES, chunk_stays=2)
    assert summary == {"stays": 3, "rows": 6, "features": 76}
    norms = json.loads((tmp_path / "out" / "normalization.json").read_text())
    assert norms["mean"]["heart_rate"] == pytest.approx(80.0)   # the test stay's 1000 is not used
    assert norms["std"]["heart_rate"] == pytest.approx(20.0)
    values = np.load(tmp_path / "out" / "values.npy")
    assert values.dtype == np.float16 and values.shape == (6, 76)
    np.testing.assert_allclose(column(values, "heart_rate"), [-1, -1, 1, 1, 46, 46], rtol=1e-3)
    np.testing.assert_array_equal(column(values, "mask_heart_rate"), [1, 0, 1, 0, 1, 0])
    index = pd.read_parquet(tmp_path / "out" / "index.parquet")
    assert index["offset"].tolist() == [0, 2, 4] and index["length"].tolist() == [2, 2, 2]
    assert json.loads((tmp_path / "out" / "features.json").read_text()) == NAMES


def test_chunks_bound_stays_and_events():
    chunks = stay_chunks(np.array([5, 5, 20, 1, 1, 1]), max_stays=2, max_events=10)
    assert [(c.start, c.stop) for c in chunks] == [(0, 2), (2, 3), (3, 5), (5, 6)]
