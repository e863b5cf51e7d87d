"""The planted signals: each modality predicts death on its own, and together they predict it better.

Features are read from what the pipeline will see: vital-sign trends from chartevents (EHR) and
the rendered findings (image); a plain logistic regression stands in for the model.
"""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from data_prep.synthetic.settings import make_settings
from data_prep.synthetic.twin import build_tables

IMAGE_FEATURES = ["heart_ctr", "haze", "effusion_left", "effusion_right"]


def ehr_trend_features(root) -> pd.DataFrame:
    """Per stay: change of HR, SBP, RR, SpO2 between hours 0-6 and 24-48 after intime."""
    chart = pd.read_csv(root / "icu/chartevents.csv.gz", usecols=["stay_id", "charttime", "itemid", "valuenum"])
    stays = pd.read_csv(root / "icu/icustays.csv.gz", usecols=["stay_id", "intime"])
    chart = chart.merge(stays, on="stay_id")
    chart["hours"] = (pd.to_datetime(chart["charttime"]) - pd.to_datetime(chart["intime"])).dt.total_seconds() / 3600
    variables = {220045: "hr", 220179: "sbp", 220050: "sbp", 220210: "rr", 224690: "rr", 220277: "spo2"}
    chart = chart[chart["itemid"].isin(list(variables)) & chart["valuenum"].between(1, 300)]
    chart["variable"] = chart["itemid"].map(variables)
    early = chart[chart["hours"].between(0, 6)].groupby(["stay_id", "variable"])["valuenum"].mean()
    late = chart[chart["hours"].between(24, 48)].groupby(["stay_id", "variable"])["valuenum"].mean()
    return (late - early).unstack()


def aurocs(frame: pd.DataFrame, label: str, feature_sets: dict[str, list[str]]) -> dict[str, float]:
    y = frame[label].to_numpy()
    result = {}
    for name, columns in feature_sets.items():
        scores = cross_val_predict(LogisticRegression(max_iter=1000), frame[columns].to_numpy(), y,
                                   cv=5, method="predict_proba")[:, 1]
        result[name] = roc_auc_score(y, scores)
    return result


@pytest.fixture(scope="module")
def mortality_frame(tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("signals")
    tables = build_tables(root / "iv", root / "cxr", make_settings(n_subjects=900, seed=11, scale=0.5, image_size=16))
    truth = tables["_truth_stays"]
    images = pd.concat([tables["_images"][["stay_id", "view", "in_stay"]], tables["_findings"]], axis=1)
    first_image = images[images["view"] == "AP"].groupby("stay_id")[IMAGE_FEATURES].first()
    ehr = ehr_trend_features(root / "iv")
    frame = truth.set_index("stay_id").join(ehr, how="inner").join(first_image, how="inner")
    frame = frame[(frame["outtime"] - frame["intime"]) >= pd.Timedelta(hours=48)].dropna(subset=list(ehr.columns))
    return frame.assign(died=frame["died_in_hospital"].astype(int))


def test_each_modality_alone_predicts_death_and_fusion_beats_both(mortality_frame):
    ehr_columns = ["hr", "sbp", "rr", "spo2"]
    assert mortality_frame["died"].sum() >= 40
    scores = aurocs(mortality_frame, "died", {"ehr": ehr_columns, "cxr": IMAGE_FEATURES,
                                               "both": ehr_columns + IMAGE_FEATURES})
    assert scores["ehr"] > 0.65, scores
    assert scores["cxr"] > 0.65, scores
    assert scores["both"] > max(scores["ehr"], scores["cxr"]) + 0.03, scores


def test_ehr_trend_does_not_leak_the_image_factor(mortality_frame):
    """Complementarity: the EHR trends track z_ehr, not z_cxr, and the image findings the reverse."""
    corr = mortality_frame[["hr", "haze", "z_ehr", "z_cxr"]].corr(method="spearman")
    assert corr.loc["hr", "z_ehr"] > 0.4 and abs(corr.loc["hr", "z_cxr"]) < 0.15
    assert corr.loc["haze", "z_cxr"] > 0.8 and abs(corr.loc["haze", "z_ehr"]) < 0.15


def test_signal_knobs_scale_each_modality(tmp_path):
    """signal.cxr=0 erases the image factor from the findings; imbalance>1 strengthens the EHR trend."""
    flat = build_tables(tmp_path / "a", tmp_path / "b", make_settings(n_subjects=60, seed=2, signal_cxr=0.0,
                                                                      image_size=16, scale=0.2))
    assert flat["_findings"]["haze"].abs().max() == 0
    assert flat["_findings"]["heart_ctr"].std() < 0.05
    from data_prep.synthetic.settings import TwinSettings
    assert TwinSettings(imbalance=4.0).ehr_amplitude == 2.0
    assert TwinSettings(imbalance=4.0).cxr_amplitude == 0.5
