"""Per-stay physiology: baselines from the conditions, and the EHR-only deterioration trend.

`severity` = z_ehr x ehr_amplitude drives a simple, strong trend over the first 36 hours
(heart and respiratory rate up, blood pressure and SpO2 down): the quick-to-learn EHR signal.
Conditions shift baselines (sepsis -> fever and tachycardia, diabetes -> glucose, ...).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_prep.synthetic.latent import HOUR, Cohort

TREND_HOURS = 36.0
# how far one unit of `severity` moves each vital at full trend
TREND_PER_SEVERITY = {"hr": 14.0, "sbp": -14.0, "dbp": -7.0, "rr": 4.0, "spo2": -2.0, "glucose": 10.0,
                      "ph": -0.03}


def stay_context(rng: np.random.Generator, cohort: Cohort, ehr_amplitude: float) -> pd.DataFrame:
    """One row per ICU stay (in writing order: subject, then intime) with everything charting needs."""
    stays = cohort.stays.sort_values(["subject_id", "intime"], kind="stable").reset_index(drop=True)
    adm = cohort.admissions.iloc[stays["admission_index"].to_numpy()].reset_index(drop=True)
    subj = cohort.subjects.iloc[adm["subject_index"].to_numpy()].reset_index(drop=True)
    n = len(stays)
    c = {name: adm[name].to_numpy(dtype=float) for name in (
        "septicemia", "shock", "pneumonia", "cardiac_dysrhythmias", "gastrointestinal_hemorrhage",
        "essential_hypertension", "hypertension_with_complications_and_secondary_hypertension",
        "chronic_obstructive_pulmonary_disease_and_bronchiectasis", "respiratory_failure",
        "diabetes_mellitus_without_complication", "diabetes_mellitus_with_complications",
        "acute_cerebrovascular_disease", "acute_and_unspecified_renal_failure", "chronic_kidney_disease")}
    male = (subj["gender"].to_numpy() == "M").astype(float)
    intubated = adm["intubated"].to_numpy()
    ctx = pd.DataFrame({
        "subject_id": stays["subject_id"].to_numpy(),
        "hadm_id": stays["hadm_id"].to_numpy(),
        "stay_id": stays["stay_id"].to_numpy(),
        "intime": stays["intime"].to_numpy(),
        "admittime": adm["admittime"].to_numpy(),
        "los_hours": (stays["outtime"] - stays["intime"]).to_numpy() / HOUR,
        "severity": adm["z_ehr"].to_numpy() * ehr_amplitude,
        "intubated": intubated,
        "hr0": 84 + 9 * rng.normal(size=n) + 12 * c["septicemia"] + 8 * c["gastrointestinal_hemorrhage"]
        + 6 * c["cardiac_dysrhythmias"],
        "hr_noise": 5 + 12 * c["cardiac_dysrhythmias"],
        "sbp0": 120 + 12 * rng.normal(size=n) + 18 * c["essential_hypertension"]
        + 24 * c["hypertension_with_complications_and_secondary_hypertension"] - 12 * c["shock"],
        "rr0": 18 + 2.5 * rng.normal(size=n) + 4 * c["chronic_obstructive_pulmonary_disease_and_bronchiectasis"]
        + 2 * c["pneumonia"],
        "spo2_0": 97.5 + 0.8 * rng.normal(size=n)
        - 3 * c["chronic_obstructive_pulmonary_disease_and_bronchiectasis"] - 2 * c["respiratory_failure"],
        "temp0": 36.8 + 0.3 * rng.normal(size=n) + 1.3 * c["septicemia"] + 0.7 * c["pneumonia"],
        "glucose0": 120 + 18 * rng.normal(size=n) + 55 * c["diabetes_mellitus_without_complication"]
        + 95 * c["diabetes_mellitus_with_complications"],
        "ph0": 7.40 + 0.03 * rng.normal(size=n) - 0.05 * c["shock"],
        "fio2_0": np.where(intubated, rng.uniform(40, 80, size=n), rng.uniform(21, 40, size=n)),
        "weight_kg": np.clip(72 + 10 * male + 17 * rng.normal(size=n), 38, 220),
        "height_cm": np.clip(163 + 13 * male + 7 * rng.normal(size=n), 135, 210),
        "creatinine0": 0.9 + 1.6 * c["acute_and_unspecified_renal_failure"] + 1.3 * c["chronic_kidney_disease"],
        "urine0": 90 - 55 * c["acute_and_unspecified_renal_failure"] - 25 * c["chronic_kidney_disease"],
        "dysrhythmia": c["cardiac_dysrhythmias"] > 0,
        "stroke": c["acute_cerebrovascular_disease"] > 0,
        # per-stay charting habits: which itemid or unit a unit's nurses use
        "arterial_line": rng.random(n) < 0.35,
        "temp_fahrenheit": rng.random(n) < 0.8,
        "fio2_as_fraction": rng.random(n) < 0.1,
        "gcs_plain_text": rng.random(n) < 0.15,
        "weight_in_lb": rng.random(n) < 0.2,
        "height_charted": rng.random(n) < 0.6,
        "height_in_inches": rng.random(n) < 0.3,
        "foley": rng.random(n) < 0.8,
    })
    return ctx


def trend(ctx: pd.DataFrame, idx: np.ndarray, hours: np.ndarray, variable: str) -> np.ndarray:
    """The deterioration offset of `variable` at `hours` after intime for the stays `idx`."""
    ramp = np.clip(hours / TREND_HOURS, 0.0, 1.0)
    return TREND_PER_SEVERITY[variable] * ctx["severity"].to_numpy()[idx] * ramp
