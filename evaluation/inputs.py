"""Reading training's and data preparation's output files, validated against the contracts.

Only files are read (docs/architecture.md), never training code. Optional context (cohort
flow, pairing counts, history, data version) degrades to "not available" in the report;
the predictions are the one input without which there is nothing to evaluate.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from data_prep.errors import PipelineInputError
from models.names import HEADS, MODALITIES, ROUTED_HEAD, head_is_defined_without_image

ID_COLUMNS = ("subject_id", "stay_id", "split", "has_cxr")
HEAD_SETS = (HEADS, *((modality,) for modality in MODALITIES))  # multi-head, or one unimodal head
DATA_STAGES = ("synthesize", "extract_ehr", "build_tasks", "ehr_tensors", "pair_cxr", "cache_cxr")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """The test stays of one run: ids (kept internal), outcomes and each head's probabilities."""

    frame: pd.DataFrame  # subject_id, stay_id, has_cxr, plus y_/p_ columns; test split only
    labels: list[str]
    heads: tuple[str, ...] = HEADS  # the heads the model has (a unimodal model: its one head),
    # then ROUTED_HEAD where the file has the routed prediction (training/predictions.py)

    def y(self, rows: np.ndarray | None = None) -> np.ndarray:
        return self._matrix("y_", rows)

    def p(self, head: str, rows: np.ndarray | None = None) -> np.ndarray:
        return self._matrix(f"p_{head}_", rows)

    def _matrix(self, prefix: str, rows: np.ndarray | None) -> np.ndarray:
        frame = self.frame if rows is None else self.frame[rows]
        return frame[[prefix + label for label in self.labels]].to_numpy(dtype=np.float64)


def read_predictions(path: str | Path, split: str = "test") -> Predictions:
    """Load runs/<task>/predictions.parquet and keep `split`; one clear error for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise PipelineInputError(f"{path}: predictions file not found (run the train stage first)")
    return predictions_from_frame(pd.read_parquet(path), str(path), split)


def predictions_from_frame(frame: pd.DataFrame, path: str, split: str = "test") -> Predictions:
    """Validate a predictions table (named `path` in errors) and keep the `split` rows."""
    missing = [c for c in ID_COLUMNS if c not in frame.columns]
    if missing:
        raise PipelineInputError(f"{path}: missing column {missing[0]!r} (expected {', '.join(ID_COLUMNS)})")
    labels = [c[2:] for c in frame.columns if c.startswith("y_")]
    if not labels:
        raise PipelineInputError(f"{path}: no y_<label> columns (expected one per label)")
    heads = tuple(head for head in HEADS if any(f"p_{head}_{label}" in frame.columns for label in labels))
    if heads not in HEAD_SETS:
        missing = next(f"p_{head}_{labels[0]}" for head in HEADS if head not in heads)
        raise PipelineInputError(f"{path}: missing column {missing!r} (expected p_<head>_<label> for the heads "
                                 f"{', '.join(HEADS)} of a multi-head model, or the one head of a unimodal model)")
    if any(f"p_{ROUTED_HEAD}_{label}" in frame.columns for label in labels):
        heads = (*heads, ROUTED_HEAD)  # optional: files written before routing have none
    for head in heads:
        for label in labels:
            if f"p_{head}_{label}" not in frame.columns:
                raise PipelineInputError(f"{path}: missing column 'p_{head}_{label}' "
                                         f"(expected p_{head}_<label> for every label)")
    frame = frame[frame["split"].astype(str) == split].reset_index(drop=True)
    if frame.empty:
        raise PipelineInputError(f"{path}: no rows with split == {split!r}")
    frame["has_cxr"] = frame["has_cxr"].astype(bool)
    for label in labels:
        y = frame[f"y_{label}"]
        if y.isna().any() or not y.isin([0, 1]).all():
            raise PipelineInputError(f"{path}: column 'y_{label}' must hold 0/1 without nulls")
        for head in heads:
            column = f"p_{head}_{label}"
            if head_is_defined_without_image(head) and frame[column].isna().any():
                raise PipelineInputError(f"{path}: column '{column}' has nulls (expected a "
                                         "probability for every stay)")
            if frame.loc[frame["has_cxr"], column].isna().any():
                raise PipelineInputError(f"{path}: column '{column}' is null for a stay with an "
                                         "image (expected a probability wherever has_cxr is true)")
    return Predictions(frame, labels, heads)


def read_demographics(path: str | Path | None) -> pd.DataFrame | None:
    """stay_id, sex, age from labels.parquet, for the subgroup tables; None when absent."""
    if path is None or not Path(path).is_file():
        if path is not None:
            log.warning("%s not found: no sex/age subgroups", path)
        return None
    frame = pd.read_parquet(path)
    missing = [c for c in ("stay_id", "sex", "age") if c not in frame.columns]
    if missing:
        raise PipelineInputError(f"{path}: missing column {missing[0]!r} (expected stay_id, sex, age)")
    return frame[["stay_id", "sex", "age"]]


def read_json(path: str | Path | None, what: str) -> dict | list | None:
    if path is None or not Path(path).is_file():
        log.warning("%s not available%s", what, f" ({path} not found)" if path else "")
        return None
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise PipelineInputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def read_history(path: str | Path | None) -> list[dict]:
    history = read_json(path, "training history")
    if history is None:
        return []
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise PipelineInputError(f"{path}: expected a JSON list with one dict per epoch")
    return history


def data_version(lock_path: str | Path, task: str) -> dict[str, str]:
    """md5 of each data stage's outputs from dvc.lock ({} when the data are unversioned)."""
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        return {}
    try:
        stages = (yaml.safe_load(lock_path.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        log.warning("%s: unreadable; data version unknown", lock_path)
        return {}
    version = {}
    for name, stage in stages.items():
        base, _, item = name.partition("@")
        if base not in DATA_STAGES or (item and item != task):
            continue
        for out in stage.get("outs", []) or []:
            if "md5" in out:
                version[str(out["path"])] = str(out["md5"])
    return dict(sorted(version.items()))
