"""generate_twin: the whole synthetic tree, written beside `out_dir` and renamed into place."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from data_prep import schemas
from data_prep.errors import PipelineInputError
from data_prep.io import atomic_path
from data_prep.synthetic import chartevents, cxr_studies, ehr_tables, labs
from data_prep.synthetic.cxr_images import render, save_jpeg
from data_prep.synthetic.latent import PHENOTYPE_RISK, make_cohort
from data_prep.synthetic.physiology import stay_context
from data_prep.synthetic.settings import TwinSettings, make_settings
from data_prep.synthetic.writers import write_table

log = logging.getLogger(__name__)

# independent random streams per component: changing one part never shifts another's draws
STREAMS = {"cohort": 1, "context": 2, "admissions": 3, "diagnoses": 4, "labs": 5, "output": 6,
           "findings": 7, "images": 8, "labels": 9}


def _rng(settings: TwinSettings, stream: str) -> np.random.Generator:
    return np.random.default_rng([settings.seed, STREAMS[stream]])


def generate_twin(out_dir: str | os.PathLike[str], n_subjects: int = 40, seed: int = 0, scale: float = 1.0,
                  image_size: int = 64, signal_ehr: float = 1.0, signal_cxr: float = 1.0,
                  imbalance: float = 1.0, **more: Any) -> dict[str, Any]:
    """Write `<out_dir>/{mimic-iv, mimic-cxr-jpg, truth}` and return a summary (counts, seconds).

    Extra keywords: image_aspect, cxr_fraction, workers, jpeg_quality, other_chart_items (see TwinSettings).
    Defaults make a tiny fixture; the pipeline's defaults live in configs/data/synthetic.yaml.
    """
    settings = make_settings(n_subjects=n_subjects, seed=seed, scale=scale, image_size=image_size,
                             signal_ehr=signal_ehr, signal_cxr=signal_cxr, imbalance=imbalance, **more)
    return write_twin(Path(out_dir), settings)


def write_twin(out_dir: Path, settings: TwinSettings) -> dict[str, Any]:
    started = time.perf_counter()
    check_writable(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        summary = build_tree(tmp, settings)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    log.info("synthetic twin: %d subjects, %d ICU stays, %d chartevents rows, %d images in %.1f s",
             summary["subjects"], summary["icu_stays"], summary["chartevents_rows"], summary["images"],
             summary["seconds"])
    return summary


def check_writable(out_dir: Path) -> None:
    """Fail before any work, with one line, when the output cannot be created."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        probe = out_dir.parent / f".{out_dir.name}.write-probe"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise PipelineInputError(f"data.synthetic.out={str(out_dir)!r}: cannot write there "
                                 f"({err.strerror or err}); expected a writable directory path") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineInputError(f"data.synthetic.out={str(out_dir)!r}: is a file; expected a directory path")


def build_tree(root: Path, settings: TwinSettings) -> dict[str, Any]:
    ehr_root, cxr_root, truth_root = root / "mimic-iv", root / "mimic-cxr-jpg", root / "truth"
    tables = build_tables(ehr_root, cxr_root, settings)
    images, findings = tables.pop("_images"), tables.pop("_findings")
    write_images(cxr_root, images, findings, settings)
    write_truth(truth_root, tables.pop("_truth_stays"), images, findings, settings)
    return tables


def build_tables(ehr_root: Path, cxr_root: Path, settings: TwinSettings) -> dict[str, Any]:
    """Every CSV table (no JPEGs); returns row counts plus the frames images and truth need."""
    cohort = make_cohort(_rng(settings, "cohort"), settings.n_subjects)
    ctx = stay_context(_rng(settings, "context"), cohort, settings.ehr_amplitude)
    diagnoses, coded = ehr_tables.diagnoses(cohort, _rng(settings, "diagnoses"))
    counts = {
        "patients": write_table(schemas.PATIENTS, ehr_root, ehr_tables.patients(cohort)),
        "admissions": write_table(schemas.ADMISSIONS, ehr_root, ehr_tables.admissions(cohort, _rng(settings, "admissions"))),
        "diagnoses_icd": write_table(schemas.DIAGNOSES_ICD, ehr_root, diagnoses),
        "d_icd_diagnoses": write_table(schemas.D_ICD_DIAGNOSES, ehr_root, ehr_tables.d_icd_diagnoses()),
        "icustays": write_table(schemas.ICUSTAYS, ehr_root, ehr_tables.icustays(cohort)),
        "d_items": write_table(schemas.D_ITEMS, ehr_root, ehr_tables.d_items()),
        "d_labitems": write_table(schemas.D_LABITEMS, ehr_root, ehr_tables.d_labitems()),
        "labevents": write_table(schemas.LABEVENTS, ehr_root, labs.labevents(ctx, settings.scale, _rng(settings, "labs"))),
        "outputevents": write_table(schemas.OUTPUTEVENTS, ehr_root,
                                    labs.outputevents(ctx, settings.scale, _rng(settings, "output"))),
        "chartevents": write_table(schemas.CHARTEVENTS, ehr_root,
                                   tqdm(chartevents.chartevents_chunks(ctx, settings.scale, settings.seed,
                                                                    settings.other_chart_items),
                                        desc="chartevents", unit="chunk", leave=False)),
    }
    by_admission = cxr_studies.admission_findings(cohort, settings.cxr_amplitude, _rng(settings, "findings"))
    images = cxr_studies.plan_images(cohort, settings.cxr_fraction, _rng(settings, "findings"))
    findings = cxr_studies.image_findings(images, by_admission, _rng(settings, "findings"))
    labels = cxr_studies.chexpert_labels(findings, _rng(settings, "labels"))
    width, height = settings.image_size, settings.image_height
    cxr_root.mkdir(parents=True, exist_ok=True)
    write_table(schemas.CXR_METADATA, cxr_root, cxr_studies.metadata_table(images, width, height))
    write_table(schemas.CXR_SPLIT, cxr_root, cxr_studies.split_table(images))
    write_table(schemas.CXR_CHEXPERT, cxr_root, cxr_studies.chexpert_table(images, labels))
    truth_stays = truth_stay_table(cohort, coded)
    return {
        "subjects": len(cohort.subjects), "admissions": len(cohort.admissions), "icu_stays": len(cohort.stays),
        "chartevents_rows": counts["chartevents"], "labevents_rows": counts["labevents"],
        "images": len(images), "studies": int(images["study_id"].nunique()),
        "stays_with_image": int(images["stay_id"].nunique()),
        "in_hospital_deaths": int(cohort.admissions["died_in_hospital"].sum()),
        "rows": counts, "settings": settings.as_dict(),
        "_images": images, "_findings": findings, "_truth_stays": truth_stays,
    }


def truth_stay_table(cohort, coded: pd.DataFrame) -> pd.DataFrame:
    """Latent truth per ICU stay: severities, death, and each phenotype condition (present / coded)."""
    adm = cohort.admissions.iloc[cohort.stays["admission_index"].to_numpy()].reset_index(drop=True)
    truth = cohort.stays[["subject_id", "hadm_id", "stay_id", "intime", "outtime"]].reset_index(drop=True).copy()
    for column in ("intime", "outtime"):
        truth[column] = truth[column].to_numpy().astype("datetime64[s]")
    truth["age"] = adm["age"].to_numpy()
    truth["icd_version"] = adm["icd_version"].to_numpy()
    truth["z_ehr"] = adm["z_ehr"].to_numpy()
    truth["z_cxr"] = adm["z_cxr"].to_numpy()
    truth["cardiometabolic"] = adm["cardiometabolic"].to_numpy()
    truth["intubated"] = adm["intubated"].to_numpy()
    truth["died_in_hospital"] = adm["died_in_hospital"].to_numpy()
    coded_by_hadm = coded.set_index("hadm_id")
    for name in PHENOTYPE_RISK:
        truth[f"has_{name}"] = adm[name].to_numpy()
        truth[f"coded_{name}"] = coded_by_hadm.loc[truth["hadm_id"], name].to_numpy()
    return truth.sort_values(["subject_id", "intime"], kind="stable").reset_index(drop=True)


def _render_one(job: tuple) -> None:
    findings, view, width, height, seed, path, quality = job
    save_jpeg(render(findings, view, width, height, seed), path, quality)


def write_images(cxr_root: Path, images: pd.DataFrame, findings: pd.DataFrame, settings: TwinSettings) -> None:
    width, height = settings.image_size, settings.image_height
    jobs = []
    for position, row in enumerate(images.itertuples(index=False)):
        path = cxr_root / schemas.cxr_image_relpath(row.subject_id, row.study_id, row.dicom_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((cxr_studies.findings_of(findings.iloc[position]), row.view, width, height,
                     (settings.seed, STREAMS["images"], position), path, settings.jpeg_quality))
    progress = dict(total=len(jobs), desc="radiographs", unit="image", leave=False)
    if settings.workers > 1 and len(jobs) > 50:
        with ProcessPoolExecutor(max_workers=settings.workers) as pool:
            for _ in tqdm(pool.map(_render_one, jobs, chunksize=32), **progress):
                pass
    else:
        for job in tqdm(jobs, **progress):
            _render_one(job)


def write_truth(truth_root: Path, stays: pd.DataFrame, images: pd.DataFrame, findings: pd.DataFrame,
                settings: TwinSettings) -> None:
    """The latent state the generator used (tests and docs only; the pipeline never reads it)."""
    truth_root.mkdir(parents=True, exist_ok=True)
    stays.to_parquet(truth_root / "stays.parquet", index=False)
    table = images[["dicom_id", "subject_id", "hadm_id", "stay_id", "study_id", "view", "in_stay"]].copy()
    table["study_datetime"] = images["time"].to_numpy().astype("datetime64[s]")
    table = pd.concat([table.reset_index(drop=True), findings.reset_index(drop=True)], axis=1)
    table["rows"], table["columns"] = settings.image_height, settings.image_size
    table.to_parquet(truth_root / "images.parquet", index=False)
