"""The hidden world behind the twin: patients, admissions, ICU stays and their latent state.

Each admission carries two independent latent severities: `z_ehr` (physiological
deterioration, shown only in the vital-sign trends) and `z_cxr` (radiographic burden, shown
only in the images), plus a `cardiometabolic` factor that correlates chronic conditions.
In-hospital death and the 25 phenotype conditions are drawn from them, which is what makes
the two modalities complementary (docs/synthetic-data.md has the formulas).
Times are int64 seconds since 1970 (date-shifted years 2110-2210, as in MIMIC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_prep.synthetic.catalog import PHENOTYPE_CODES

HOUR = 3600
DAY = 86400

# phenotype -> (intercept, loading on z_ehr, loading on z_cxr, loading on cardiometabolic)
PHENOTYPE_RISK: dict[str, tuple[float, float, float, float]] = {
    "acute_and_unspecified_renal_failure": (-1.3, 0.7, 0.0, 0.3),
    "acute_cerebrovascular_disease": (-2.6, 0.0, 0.0, 0.3),
    "acute_myocardial_infarction": (-2.3, 0.3, 0.2, 0.5),
    "cardiac_dysrhythmias": (-0.9, 0.3, 0.0, 0.4),
    "chronic_kidney_disease": (-1.6, 0.0, 0.0, 0.8),
    "chronic_obstructive_pulmonary_disease_and_bronchiectasis": (-1.8, 0.0, 0.0, 0.0),
    "complications_of_surgical_procedures_or_medical_care": (-1.9, 0.0, 0.0, 0.0),
    "conduction_disorders": (-2.3, 0.0, 0.0, 0.4),
    "congestive_heart_failure_nonhypertensive": (-1.4, 0.0, 1.0, 0.6),
    "coronary_atherosclerosis_and_other_heart_disease": (-1.0, 0.0, 0.0, 0.9),
    "diabetes_mellitus_with_complications": (-2.2, 0.0, 0.0, 0.7),
    "diabetes_mellitus_without_complication": (-1.5, 0.0, 0.0, 0.5),
    "disorders_of_lipid_metabolism": (-0.9, 0.0, 0.0, 0.8),
    "essential_hypertension": (-0.5, 0.0, 0.0, 0.5),
    "fluid_and_electrolyte_disorders": (-1.0, 0.6, 0.0, 0.0),
    "gastrointestinal_hemorrhage": (-2.4, 0.2, 0.0, 0.0),
    "hypertension_with_complications_and_secondary_hypertension": (-1.7, 0.0, 0.0, 0.9),
    "other_liver_diseases": (-2.2, 0.2, 0.0, 0.0),
    "other_lower_respiratory_disease": (-2.0, 0.0, 0.3, 0.0),
    "other_upper_respiratory_disease": (-2.6, 0.0, 0.0, 0.0),
    "pleurisy_pneumothorax_pulmonary_collapse": (-1.9, 0.0, 0.9, 0.0),
    "pneumonia": (-1.5, 0.2, 0.9, 0.0),
    "respiratory_failure": (-1.4, 0.7, 0.6, 0.0),
    "septicemia": (-1.9, 1.1, 0.0, 0.0),
    "shock": (-2.6, 1.4, 0.0, 0.0),
}
assert set(PHENOTYPE_RISK) == set(PHENOTYPE_CODES)

# in-hospital death: logit = intercept + w * (z_ehr + z_cxr) + age_slope * (age - 65)
MORTALITY_INTERCEPT, MORTALITY_WEIGHT, MORTALITY_AGE_SLOPE = -2.7, 1.3, 0.02

YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")
CAREUNITS = ("Medical Intensive Care Unit (MICU)", "Surgical Intensive Care Unit (SICU)",
             "Cardiac Vascular Intensive Care Unit (CVICU)",
             "Medical/Surgical Intensive Care Unit (MICU/SICU)", "Coronary Care Unit (CCU)",
             "Trauma SICU (TSICU)", "Neuro Surgical Intensive Care Unit (Neuro SICU)")
CAREUNIT_WEIGHTS = (0.3, 0.15, 0.15, 0.15, 0.12, 0.08, 0.05)


@dataclass
class Cohort:
    subjects: pd.DataFrame
    admissions: pd.DataFrame
    stays: pd.DataFrame


def sorted_unique_ids(rng: np.random.Generator, n: int, start: int) -> np.ndarray:
    """Increasing ids with random gaps that stay within 8 digits (MIMIC's id width)."""
    max_gap = int(max(2, min(5000, 8e7 // max(n, 1))))
    return start + np.cumsum(rng.integers(1, max_gap, size=n, endpoint=True)).astype(np.int64)


def year_start_seconds(years: np.ndarray) -> np.ndarray:
    return (np.asarray(years, dtype=np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)


def make_subjects(rng: np.random.Generator, n: int) -> pd.DataFrame:
    minor = rng.random(n) < 0.02
    age = np.where(minor, rng.integers(15, 18, size=n),
                   np.clip(rng.normal(64, 16, size=n), 18, 91).round()).astype(np.int32)
    group = rng.integers(0, len(YEAR_GROUPS), size=n)
    return pd.DataFrame({
        "subject_id": sorted_unique_ids(rng, n, 10_000_000),
        "gender": np.where(rng.random(n) < 0.55, "M", "F"),
        "anchor_age": age,
        "anchor_year": rng.integers(2110, 2200, size=n, endpoint=True).astype(np.int32),
        "year_group": group,
        # the real calendar year the anchor year stands for (decides ICD-9 vs ICD-10)
        "real_anchor_year": 2008 + 3 * group + rng.integers(0, 3, size=n),
        "cardiometabolic": rng.normal(size=n),
    })


def make_admissions(rng: np.random.Generator, subjects: pd.DataFrame) -> pd.DataFrame:
    n_adm = 1 + (rng.random(len(subjects)) < 0.2) + (rng.random(len(subjects)) < 0.05)
    owner = np.repeat(np.arange(len(subjects)), n_adm)
    first = np.r_[True, owner[1:] != owner[:-1]]
    gap_days = np.where(first, rng.uniform(0, 400, size=len(owner)), rng.uniform(30, 300, size=len(owner)))
    offset_days = _cumsum_by_group(gap_days, owner)
    sub = subjects.iloc[owner].reset_index(drop=True)
    admittime = year_start_seconds(sub["anchor_year"].to_numpy()) + (offset_days * DAY).astype(np.int64)
    admittime -= admittime % 60  # admissions times end in :00
    years_since_anchor = offset_days / 365.25
    age = sub["anchor_age"].to_numpy() + np.floor(years_since_anchor)
    real_year = sub["real_anchor_year"].to_numpy() + years_since_anchor
    n = len(owner)
    adm = pd.DataFrame({
        "subject_index": owner,
        "subject_id": sub["subject_id"].to_numpy(),
        "hadm_id": np.zeros(n, dtype=np.int64),
        "admittime": admittime,
        "age": age,
        "icd_version": np.where(real_year >= 2015.75, 10, 9).astype(np.int32),
        "z_ehr": rng.normal(size=n),
        "z_cxr": rng.normal(size=n),
        "cardiometabolic": sub["cardiometabolic"].to_numpy() + 0.3 * rng.normal(size=n),
    })
    # hadm_ids are not in time order in MIMIC; a random permutation of sorted ids mimics that
    adm["hadm_id"] = rng.permutation(sorted_unique_ids(rng, n, 20_000_000))
    for name, (intercept, w_ehr, w_cxr, w_cm) in PHENOTYPE_RISK.items():
        logit = intercept + w_ehr * adm["z_ehr"] + w_cxr * adm["z_cxr"] + w_cm * adm["cardiometabolic"]
        adm[name] = rng.random(n) < _sigmoid(logit.to_numpy())
    both = adm["essential_hypertension"] & adm["hypertension_with_complications_and_secondary_hypertension"]
    adm.loc[both, "essential_hypertension"] = False  # CCS codes one or the other
    mortality_logit = (MORTALITY_INTERCEPT + MORTALITY_WEIGHT * (adm["z_ehr"] + adm["z_cxr"])
                       + MORTALITY_AGE_SLOPE * (adm["age"] - 65))
    adm["died_in_hospital"] = rng.random(n) < _sigmoid(mortality_logit.to_numpy())
    adm["died_in_icu"] = adm["died_in_hospital"] & (rng.random(n) < 0.75)
    adm["intubated"] = adm["respiratory_failure"] & (rng.random(n) < 0.75) | (rng.random(n) < 0.08)
    # nobody is admitted again after dying in hospital
    died_before = adm.groupby("subject_index")["died_in_hospital"].transform(
        lambda d: d.astype(int).cumsum().shift(1, fill_value=0)) > 0
    return adm.loc[~died_before].reset_index(drop=True)


def make_stays(rng: np.random.Generator, adm: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ICU stays (1, sometimes 2 per admission) and the admission's discharge and death times."""
    n_stays = 1 + (rng.random(len(adm)) < 0.07)
    owner = np.repeat(np.arange(len(adm)), n_stays)
    first = np.r_[True, owner[1:] != owner[:-1]]
    n = len(owner)
    los_hours = np.clip(rng.lognormal(np.log(62), 0.7, size=n), 6, 24 * 25)
    lead_hours = np.where(first, rng.uniform(0.5, 30, size=n), rng.uniform(6, 72, size=n))
    intime = np.empty(n, dtype=np.int64)
    outtime = np.empty(n, dtype=np.int64)
    admittime = adm["admittime"].to_numpy()[owner]
    lead = (lead_hours * HOUR).astype(np.int64)
    length = (los_hours * HOUR).astype(np.int64)
    for i in range(n):  # at most two stays per admission: a short loop over rows is clear and cheap
        start = admittime[i] if first[i] else outtime[i - 1]
        intime[i] = start + lead[i]
        outtime[i] = intime[i] + length[i]
    unit = rng.choice(len(CAREUNITS), size=n, p=CAREUNIT_WEIGHTS)
    transfer = rng.random(n) < 0.06
    last_unit = np.where(transfer, (unit + rng.integers(1, len(CAREUNITS), size=n)) % len(CAREUNITS), unit)
    stays = pd.DataFrame({
        "admission_index": owner,
        "subject_id": adm["subject_id"].to_numpy()[owner],
        "hadm_id": adm["hadm_id"].to_numpy()[owner],
        "stay_id": rng.permutation(sorted_unique_ids(rng, n, 30_000_000)),
        "first_careunit": np.asarray(CAREUNITS)[unit],
        "last_careunit": np.asarray(CAREUNITS)[last_unit],
        "intime": intime,
        "outtime": outtime,
        "stays_in_admission": n_stays[owner],
    })
    last_out = pd.Series(outtime).groupby(owner).max().to_numpy()
    died, in_icu = adm["died_in_hospital"].to_numpy(), adm["died_in_icu"].to_numpy()
    after_icu = (rng.uniform(6, 120, size=len(adm)) * HOUR).astype(np.int64)
    deathtime = np.where(in_icu, last_out - (rng.uniform(0, 1, size=len(adm)) * HOUR).astype(np.int64),
                         last_out + after_icu)
    adm = adm.copy()
    adm["deathtime"] = np.where(died, deathtime - deathtime % 60, -1)
    disch = last_out + after_icu
    adm["dischtime"] = np.where(died, adm["deathtime"], disch - disch % 60)
    return stays, adm


def make_cohort(rng: np.random.Generator, n_subjects: int) -> Cohort:
    subjects = make_subjects(rng, n_subjects)
    admissions = make_admissions(rng, subjects)
    stays, admissions = make_stays(rng, admissions)
    # a few survivors die after discharge: dod set but not an in-hospital death
    last = ~admissions["subject_index"].duplicated(keep="last")
    late = last & ~admissions["died_in_hospital"] & (rng.random(len(admissions)) < 0.05)
    admissions["late_death"] = np.where(
        late, admissions["dischtime"] + (rng.uniform(2, 300, size=len(admissions)) * DAY).astype(np.int64), -1)
    death = np.where(admissions["deathtime"] >= 0, admissions["deathtime"], admissions["late_death"])
    dod = pd.Series(np.where(death >= 0, death, np.iinfo(np.int64).max)).groupby(
        admissions["subject_index"].to_numpy()).min()
    subjects["dod"] = np.full(len(subjects), -1, dtype=np.int64)
    subjects.loc[dod.index, "dod"] = np.where(dod.to_numpy() == np.iinfo(np.int64).max, -1, dod.to_numpy())
    return Cohort(subjects, admissions, stays)


def _cumsum_by_group(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    return pd.Series(values).groupby(groups).cumsum().to_numpy()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
