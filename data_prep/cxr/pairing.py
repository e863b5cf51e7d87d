"""Pairing each ICU stay of a task with one chest X-ray: the latest eligible image in its window.

The rule (MedFuse's, confirmed in its code): keep images whose ViewPosition is one of the
configured views (default AP), whose study time satisfies intime <= StudyDateTime <=
window_end (both edges inclusive), and take the latest per stay. Ties on the study time are
broken by the larger dicom_id so that the choice never depends on file order.

Everything is a merge on subject_id followed by vectorized filters; there is no per-stay loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from data_prep.cxr.metadata import image_relpaths

PAIR_COLUMNS = ["stay_id", "subject_id", "split", "has_cxr", "dicom_id", "study_id",
                "study_datetime", "image_relpath"]
STAY_COLUMNS = ["stay_id", "subject_id", "split", "intime", "window_end"]


def pair_stays(labels: pd.DataFrame, metadata: pd.DataFrame,
               views: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """One row per stay of `labels` (pairs contract of docs/architecture.md) and rule counts.

    `metadata` is `metadata.read_metadata`'s frame (dicom_id, subject_id, study_id,
    ViewPosition, study_datetime).
    """
    stays = labels[STAY_COLUMNS].copy()
    stays["intime"] = stays["intime"].astype("datetime64[us]")
    stays["window_end"] = stays["window_end"].astype("datetime64[us]")

    images = metadata[metadata["subject_id"].isin(stays["subject_id"])]
    counts: dict = {"views": list(views), "images_in_metadata": len(metadata),
                    "images_of_cohort_subjects": len(images)}
    in_view = images["ViewPosition"].isin(list(views)).to_numpy()
    counts["images_removed_view"] = int((~in_view).sum())
    images = images[in_view]
    dated = images["study_datetime"].notna().to_numpy()
    counts["images_removed_invalid_study_datetime"] = int((~dated).sum())
    images = images[dated]

    candidates = stays[["stay_id", "subject_id", "intime", "window_end"]].merge(
        images[["subject_id", "dicom_id", "study_id", "study_datetime"]], on="subject_id")
    in_window = ((candidates["study_datetime"] >= candidates["intime"])
                 & (candidates["study_datetime"] <= candidates["window_end"])).to_numpy()
    windowed = candidates[in_window]
    counts["images_removed_window"] = int(len(images) - windowed["dicom_id"].nunique())
    counts["stay_image_candidates_in_window"] = len(windowed)

    latest = (windowed.sort_values(["stay_id", "study_datetime", "dicom_id"])
              .drop_duplicates("stay_id", keep="last"))
    pairs = stays[["stay_id", "subject_id", "split"]].merge(
        latest[["stay_id", "dicom_id", "study_id", "study_datetime"]], on="stay_id", how="left")
    pairs["has_cxr"] = pairs["dicom_id"].notna()
    pairs["study_id"] = pairs["study_id"].astype("Int64")
    pairs["image_relpath"] = pd.Series(pd.NA, index=pairs.index, dtype="string")
    chosen = pairs["has_cxr"].to_numpy()
    pairs.loc[chosen, "image_relpath"] = image_relpaths(pairs[chosen])
    pairs = pairs[PAIR_COLUMNS].sort_values("stay_id", kind="stable").reset_index(drop=True)

    counts["images_chosen"] = int(pairs["has_cxr"].sum())
    counts["stays"] = _stays_per_split(pairs)
    return pairs, counts


def _stays_per_split(pairs: pd.DataFrame) -> dict:
    grouped = pairs.groupby("split", observed=True)["has_cxr"]
    table = pd.DataFrame({"with_cxr": grouped.sum(), "without_cxr": grouped.size() - grouped.sum()})
    per_split = {str(split): {k: int(v) for k, v in row.items()} for split, row in table.iterrows()}
    per_split["all"] = {"with_cxr": int(pairs["has_cxr"].sum()),
                        "without_cxr": int((~pairs["has_cxr"]).sum())}
    return per_split


def chosen_image_summary(pairs: pd.DataFrame, cxr_split: pd.DataFrame | None,
                         chexpert: pd.DataFrame | None) -> dict:
    """Cross-checks of the chosen images against MIMIC-CXR's own split and CheXpert tables.

    MIMIC-CXR's official split is ignored for training (images follow the EHR patient-level
    split, as in MedFuse); these counts show how much the two disagree.
    """
    chosen = pairs[pairs["has_cxr"]]
    summary: dict = {}
    if cxr_split is not None:
        joined = chosen[["dicom_id", "split"]].merge(
            cxr_split[["dicom_id", "split"]].rename(columns={"split": "cxr_split"}),
            on="dicom_id", how="left")
        summary["chosen_missing_from_cxr_split_table"] = int(joined["cxr_split"].isna().sum())
        summary["chosen_by_ehr_and_cxr_split"] = {
            f"{ehr}/{cxr}": int(n) for (ehr, cxr), n in
            joined.dropna().groupby(["split", "cxr_split"]).size().items()}
    if chexpert is not None:
        labelled = chosen["study_id"].isin(chexpert["study_id"])
        summary["chosen_with_chexpert_labels"] = int(labelled.sum())
    return summary
