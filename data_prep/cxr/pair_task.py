"""The pair_cxr stage's work for one task: read inputs, pair, write pairs parquet + counts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from data_prep.cxr.metadata import read_metadata, read_table
from data_prep.cxr.pairing import STAY_COLUMNS, chosen_image_summary, pair_stays
from data_prep.errors import PipelineInputError, StaleInputError
from data_prep.io import write_json, write_parquet
from data_prep.schemas import CXR_CHEXPERT, CXR_SPLIT, TableSpec

log = logging.getLogger(__name__)


def read_labels(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise StaleInputError(f"{path}: not found (run `dvc repro build_tasks`)")
    labels = pd.read_parquet(path, columns=None)
    missing = [c for c in STAY_COLUMNS if c not in labels.columns]
    if missing:
        raise PipelineInputError(f"{path}: missing column {missing[0]!r} (expected the labels "
                                 f"contract of docs/architecture.md: {', '.join(STAY_COLUMNS)}, ...)")
    return labels


def _optional_table(spec: TableSpec, root: Path, columns: list[str]) -> pd.DataFrame | None:
    """The split and CheXpert tables only feed cross-check counts, so their absence is a warning."""
    try:
        spec.locate(root)
    except PipelineInputError as err:
        log.warning("%s; skipping its cross-check counts", err)
        return None
    return read_table(spec, root, columns)


def pair_task(labels_file: str | Path, cxr_root: str | Path, views: Sequence[str],
              pairs_file: str | Path, counts_file: str | Path, task: str = "") -> dict:
    """Pair one task's stays with images and write both outputs atomically; returns the counts."""
    cxr_root = Path(cxr_root)
    labels = read_labels(labels_file)
    metadata = read_metadata(cxr_root)
    pairs, counts = pair_stays(labels, metadata, views)
    counts["task"] = task
    counts["rule"] = ("latest image with ViewPosition in views and intime <= StudyDate+StudyTime "
                      "<= window_end (edges inclusive); ties -> larger dicom_id")
    counts["cross_checks"] = chosen_image_summary(
        pairs, _optional_table(CXR_SPLIT, cxr_root, ["dicom_id", "split"]),
        _optional_table(CXR_CHEXPERT, cxr_root, ["study_id"]))
    write_parquet(pairs_file, pairs)
    write_json(counts_file, counts)
    log.info("%s: %d of %d stays paired with an image (%d images removed by view, %d by window)",
             task or "task", counts["stays"]["all"]["with_cxr"], len(pairs),
             counts["images_removed_view"], counts["images_removed_window"])
    return counts
