"""Which chest X-rays exist: studies per ICU stay, their times, views, findings and labels.

Image-visible factors come from the admission's latent state: `z_cxr` (diffuse haze, heart
size) and the image-visible conditions (heart failure -> cardiomegaly and edema, pneumonia
-> consolidation, pleural disease -> effusion or pneumothorax, devices). Their strength is
`cxr_amplitude` = signal.cxr / sqrt(imbalance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from data_prep import schemas
from data_prep.synthetic import formats
from data_prep.synthetic.cxr_images import Findings
from data_prep.synthetic.latent import DAY, HOUR, Cohort, sorted_unique_ids

# study kind -> (views, probability)
STUDY_KINDS = {"portable": (("AP",), 0.86), "pa_lateral": (("PA", "LATERAL"), 0.09),
               "ap_ll": (("AP", "LL"), 0.03), "repeat_ap": (("AP", "AP"), 0.02)}
VIEW_META = {  # ViewPosition -> (ViewCodeSequence_CodeMeaning, PatientOrientation)
    "AP": ("antero-posterior", "Recumbent"), "PA": ("postero-anterior", "Erect"),
    "LATERAL": ("lateral", "Erect"), "LL": ("left lateral", "Erect")}
KIND_DESCRIPTION = {"portable": "CHEST (PORTABLE AP)", "pa_lateral": "CHEST (PA AND LAT)",
                    "ap_ll": "CHEST (PORTABLE AP)", "repeat_ap": "CHEST (PORTABLE AP)"}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def admission_findings(cohort: Cohort, amplitude: float, rng: np.random.Generator) -> pd.DataFrame:
    """The radiographic state of each admission (index aligned with cohort.admissions)."""
    a = cohort.admissions
    n = len(a)
    z = a["z_cxr"].to_numpy()
    chf = a["congestive_heart_failure_nonhypertensive"].to_numpy()
    pleural = a["pleurisy_pneumothorax_pulmonary_collapse"].to_numpy()
    effusion = (pleural & (rng.random(n) < 0.7)) | (chf & (rng.random(n) < 0.35))
    ptx = pleural & ~effusion
    fluid = np.where(effusion, amplitude * (0.07 + 0.07 * _sigmoid(z)), 0.0)
    side = rng.integers(0, 3, n)  # left, right, both
    return pd.DataFrame({
        "heart_ctr": np.clip(0.44 + 0.025 * rng.normal(size=n) + amplitude * (0.12 * chf + 0.03 * z), 0.33, 0.8),
        "haze": amplitude * _sigmoid(1.8 * z - 1.0),
        "effusion_left": np.where(side != 1, fluid, 0.0),
        "effusion_right": np.where(side != 0, fluid, 0.0),
        "consolidation": np.where(a["pneumonia"].to_numpy(), amplitude * 85, 0.0),
        "edema": np.where(chf & (rng.random(n) < 0.6), amplitude * 45, 0.0),
        "pneumothorax": ptx & (amplitude > 0),
        "nodule": a["other_lower_respiratory_disease"].to_numpy() & (rng.random(n) < 0.7) & (amplitude > 0),
        "hyperinflation": np.where(a["chronic_obstructive_pulmonary_disease_and_bronchiectasis"].to_numpy(),
                                   amplitude * 0.05, 0.0),
        "ett": a["intubated"].to_numpy(),
        "central_line": rng.random(n) < 0.45,
        "pacemaker": a["conduction_disorders"].to_numpy() & (rng.random(n) < 0.7),
        "sternotomy": a["coronary_atherosclerosis_and_other_heart_disease"].to_numpy() & (rng.random(n) < 0.4),
        "tracheostomy": a["other_upper_respiratory_disease"].to_numpy() & (rng.random(n) < 0.5),
    })


def plan_images(cohort: Cohort, cxr_fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """One row per image: its stay, study, time and view (time order within a subject)."""
    s = cohort.stays.reset_index(drop=True)
    n = len(s)
    los = (s["outtime"] - s["intime"]).to_numpy()
    has = rng.random(n) < cxr_fraction
    n_studies = np.where(has, 1 + np.minimum(rng.poisson(0.5 * los / (3 * DAY)), 3), 0)
    stay = np.repeat(np.arange(n), n_studies)
    first = np.r_[True, stay[1:] != stay[:-1]] if stay.size else np.zeros(0, bool)
    u = rng.random(stay.size)
    offset = np.where(first & (u < 0.72), rng.uniform(0, DAY, stay.size),
                      np.where(first & (u < 0.84), -rng.uniform(0.5 * HOUR, 12 * HOUR, stay.size),
                               rng.uniform(0, 1, stay.size) * los[stay]))
    # a few studies after ICU discharge (on the ward)
    late = ~first & (rng.random(stay.size) < 0.15)
    offset = np.where(late, los[stay] + rng.uniform(HOUR, 72 * HOUR, stay.size), offset)
    kind_names = list(STUDY_KINDS)
    kind = rng.choice(len(kind_names), size=stay.size, p=[STUDY_KINDS[k][1] for k in kind_names])
    studies = pd.DataFrame({"stay_index": stay, "kind": np.asarray(kind_names)[kind],
                            "time": s["intime"].to_numpy()[stay] + offset.astype(np.int64)})
    studies["study_id"] = rng.permutation(sorted_unique_ids(rng, len(studies), 50_000_000))
    studies["millis"] = rng.integers(0, 1000, len(studies))
    views = studies["kind"].map(lambda k: STUDY_KINDS[k][0])
    images = studies.loc[studies.index.repeat(views.map(len))].copy()
    images["view"] = np.concatenate([np.asarray(v) for v in views]) if len(views) else np.zeros(0, str)
    images["subject_id"] = s["subject_id"].to_numpy()[images["stay_index"]]
    images["stay_id"] = s["stay_id"].to_numpy()[images["stay_index"]]
    images["hadm_id"] = s["hadm_id"].to_numpy()[images["stay_index"]]
    images["admission_index"] = s["admission_index"].to_numpy()[images["stay_index"]]
    words = rng.integers(0, 2**32, size=(len(images), 5), dtype=np.uint64)
    images["dicom_id"] = ["-".join(f"{w:08x}" for w in row) for row in words]
    images["in_stay"] = ((images["time"] >= s["intime"].to_numpy()[images["stay_index"]])
                         & (images["time"] <= s["outtime"].to_numpy()[images["stay_index"]]))
    return images.sort_values(["subject_id", "time", "study_id", "view"], kind="stable").reset_index(drop=True)


def image_findings(images: pd.DataFrame, by_admission: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Per-image findings: the admission's state, slightly different from study to study."""
    f = by_admission.iloc[images["admission_index"].to_numpy()].reset_index(drop=True)
    wobble = 1 + 0.1 * rng.normal(size=len(f))
    for name in ("haze", "effusion_left", "effusion_right", "consolidation", "edema"):
        f[name] = np.clip(f[name] * wobble, 0, None)
    return f


def findings_of(row: pd.Series) -> Findings:
    return Findings(**{name: (bool(row[name]) if isinstance(row[name], (bool, np.bool_)) else float(row[name]))
                       for name in Findings.__dataclass_fields__})


def chexpert_labels(findings: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """CheXpert labels consistent with the findings: 1.0, -1.0 (uncertain), 0.0, or NaN (blank)."""
    n = len(findings)
    blank_or_zero = lambda: np.where(rng.random(n) < 0.4, 0.0, np.nan)  # noqa: E731
    uncertain = lambda p: np.where(rng.random(n) < p, -1.0, 1.0)  # noqa: E731
    ctr = findings["heart_ctr"].to_numpy()
    fluid = np.maximum(findings["effusion_left"], findings["effusion_right"]).to_numpy()
    consol = findings["consolidation"].to_numpy() > 0
    labels = {
        "Atelectasis": np.where((fluid > 0) & (rng.random(n) < 0.4), uncertain(0.5), np.nan),
        "Cardiomegaly": np.where(ctr > 0.55, 1.0, np.where(ctr > 0.5, -1.0, blank_or_zero())),
        "Consolidation": np.where(consol, uncertain(0.4), np.nan),
        "Edema": np.where(findings["edema"].to_numpy() > 0, uncertain(0.2), blank_or_zero()),
        "Enlarged Cardiomediastinum": np.where((ctr > 0.55) & (rng.random(n) < 0.3), -1.0, np.nan),
        "Fracture": np.where(rng.random(n) < 0.01, 1.0, np.nan),
        "Lung Lesion": np.where(findings["nodule"].to_numpy(), uncertain(0.2), np.nan),
        "Lung Opacity": np.where(consol | (findings["haze"].to_numpy() > 0.5), 1.0, np.nan),
        "Pleural Effusion": np.where(fluid > 0.09, 1.0, np.where(fluid > 0, -1.0, blank_or_zero())),
        "Pleural Other": np.where(rng.random(n) < 0.01, -1.0, np.nan),
        "Pneumonia": np.where(consol, uncertain(0.6), np.nan),
        "Pneumothorax": np.where(findings["pneumothorax"].to_numpy(), 1.0, blank_or_zero()),
        "Support Devices": np.where(findings[["ett", "central_line", "pacemaker", "sternotomy",
                                              "tracheostomy"]].any(axis=1).to_numpy(), 1.0, np.nan),
    }
    findings_present = np.zeros(n, dtype=bool)
    for name, values in labels.items():
        if name != "Support Devices":
            findings_present |= np.isin(values, (1.0, -1.0))
    labels["No Finding"] = np.where(findings_present, np.nan, 1.0)
    return pd.DataFrame({name: labels[name] for name in schemas.CHEXPERT_LABELS})


def _study_date_time(seconds: np.ndarray, millis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    moments = seconds.astype("datetime64[s]")
    days = moments.astype("datetime64[D]")
    date = pd.DatetimeIndex(days)
    study_date = (date.year * 10000 + date.month * 100 + date.day).to_numpy(np.int64)
    sec = (moments - days).astype(np.int64)
    hhmmss = (sec // 3600) * 10000 + (sec // 60 % 60) * 100 + sec % 60
    return study_date, hhmmss + millis / 1000


def metadata_table(images: pd.DataFrame, width: int, height: int) -> pa.Table:
    date, time = _study_date_time(images["time"].to_numpy(), images["millis"].to_numpy())
    view = images["view"].to_numpy()
    description = images["kind"].map(KIND_DESCRIPTION).to_numpy()
    columns = {
        "dicom_id": formats.strings(images["dicom_id"].to_numpy()),
        "subject_id": formats.integers(images["subject_id"]),
        "study_id": formats.integers(images["study_id"]),
        "PerformedProcedureStepDescription": formats.strings(description),
        "ViewPosition": formats.strings(view),
        "Rows": pa.array(np.full(len(images), height, dtype=np.int32)),
        "Columns": pa.array(np.full(len(images), width, dtype=np.int32)),
        "StudyDate": formats.integers(date),
        "StudyTime": formats.fixed_decimals(time, 3),
        "ProcedureCodeSequence_CodeMeaning": formats.strings(description),
        "ViewCodeSequence_CodeMeaning": formats.strings(np.array([VIEW_META[v][0] for v in view], dtype=object)),
        "PatientOrientationCodeSequence_CodeMeaning": formats.strings(
            np.array([VIEW_META[v][1] for v in view], dtype=object)),
    }
    return pa.table({name: columns[name] for name in schemas.CXR_METADATA.column_names})


def split_table(images: pd.DataFrame) -> pa.Table:
    """MIMIC-CXR's own split (train / validate / test by a hash of the subject); the pipeline makes its own."""
    subjects = images["subject_id"].to_numpy(np.int64)
    u = (subjects * 2654435761 % 2**32) / 2**32
    split = np.where(u < 0.9, "train", np.where(u < 0.95, "validate", "test"))
    columns = {"dicom_id": formats.strings(images["dicom_id"].to_numpy()),
               "study_id": formats.integers(images["study_id"]),
               "subject_id": formats.integers(images["subject_id"]),
               "split": formats.strings(split)}
    return pa.table({name: columns[name] for name in schemas.CXR_SPLIT.column_names})


def chexpert_table(images: pd.DataFrame, labels: pd.DataFrame) -> pa.Table:
    """One row per study (labels of the study's first image)."""
    first = ~images["study_id"].duplicated()
    studies = images.loc[first]
    per_study = labels.loc[first.to_numpy()]
    order = np.argsort(studies["subject_id"].to_numpy() * 10**9 + studies["study_id"].to_numpy(), kind="stable")
    columns = {"subject_id": formats.integers(studies["subject_id"].to_numpy()[order]),
               "study_id": formats.integers(studies["study_id"].to_numpy()[order])}
    for name in schemas.CHEXPERT_LABELS:
        columns[name] = formats.one_decimal_labels(per_study[name].to_numpy()[order])
    return pa.table({name: columns[name] for name in schemas.CXR_CHEXPERT.column_names})
