"""Where every stage reads and writes, derived from the configuration in one place.

dvc.yaml writes the same locations with `${data.interim_dir}`-style interpolation of the same
params, so changing a directory setting moves the files and the DVC outputs together
(tests/test_project.py checks that no stage spells a configurable directory literally).
Functions take the composed configuration (DictConfig or plain dict).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _get(cfg: Mapping[str, Any], section: str, key: str) -> Path:
    return Path(str(cfg[section][key]))


def ehr_interim_dir(cfg: Mapping[str, Any]) -> Path:
    """extract_ehr's output: events.parquet, stays.parquet, extract_summary.json."""
    return _get(cfg, "data", "interim_dir") / "ehr"


def tasks_dir(cfg: Mapping[str, Any]) -> Path:
    """build_tasks' output: <task>/{labels.parquet, cohort.json}."""
    return _get(cfg, "data", "interim_dir") / "tasks"


def labels_path(cfg: Mapping[str, Any], task: str) -> Path:
    return tasks_dir(cfg) / task / "labels.parquet"


def cohort_path(cfg: Mapping[str, Any], task: str) -> Path:
    return tasks_dir(cfg) / task / "cohort.json"


def pairs_path(cfg: Mapping[str, Any], task: str) -> Path:
    return _get(cfg, "data", "interim_dir") / "cxr" / f"pairs_{task}.parquet"


def counts_path(cfg: Mapping[str, Any], task: str) -> Path:
    return _get(cfg, "data", "interim_dir") / "cxr" / f"pairs_{task}_counts.json"


def cache_dir(cfg: Mapping[str, Any]) -> Path:
    return _get(cfg, "data", "processed_dir") / "cxr"


def ehr_dir(cfg: Mapping[str, Any], task: str) -> Path:
    """ehr_tensors@<task>'s output: values.npy, index.parquet, normalization and features."""
    return _get(cfg, "data", "processed_dir") / "ehr" / task


def run_dir(cfg: Mapping[str, Any], task: str) -> Path:
    """train@<task>'s output: model.pt, last.pt, predictions.parquet, history.json, dvclive/."""
    return _get(cfg, "train", "runs_dir") / task


def report_dir(cfg: Mapping[str, Any], task: str) -> Path:
    return _get(cfg, "eval", "reports_dir") / task


def membership_path(cfg: Mapping[str, Any], task: str) -> Path:
    """membership@<task>'s output: the trained model's and the reference models' predictions
    on the training (member) and test (non-member) stays, for the membership-inference audit."""
    return run_dir(cfg, task) / "audit" / "membership.parquet"


def privacy_report_path(cfg: Mapping[str, Any], task: str) -> Path:
    """audit@<task>'s output: the attacks' success with CIs and the epsilon spent (DVC metrics)."""
    return report_dir(cfg, task) / "privacy.json"


def teachers_dir(cfg: Mapping[str, Any], task: str) -> Path:
    """teachers@<task>'s output: <member>/ (a unimodal run each), logits.parquet, teachers.json."""
    return _get(cfg, "train", "runs_dir") / "teachers" / task


def teacher_logits_path(cfg: Mapping[str, Any], task: str) -> Path:
    """Every teacher's logits for every train/val/test stay of `task` (training/teacher_logits.py)."""
    return teachers_dir(cfg, task) / "logits.parquet"
