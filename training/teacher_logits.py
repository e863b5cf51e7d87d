"""The teachers' logits file (runs/teachers/<task>/logits.parquet) and the table the student reads.

Contract, written by teachers@<task> (training/teachers.py), one row per stay of the task's
train, val and test splits (all stays, with or without an image), sorted by stay_id:

    stay_id, split, has_cxr, y_<label>...      the stay and its outcomes, as the run saw them
    z/<member>/<label>                         each member's logit (float32); null for a CXR
                                               member on a stay without an image

The members and their modalities are in the file's metadata (key `teachers`, JSON
{"members": {name: modality}, "labels": [...]}) so the table is self-describing. The student
(training/regimes/distill.py) loads it once at the start of its run, checks it against the
task's training stays and labels, and looks each batch's stays up by stay_id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from data_prep.errors import PipelineInputError, StaleInputError
from data_prep.io import write_parquet
from models.names import IMAGE_HEAD, MODALITIES

METADATA_KEY = b"teachers"


def logit_column(member: str, label: str) -> str:
    return f"z/{member}/{label}"


@dataclass(frozen=True)
class TeacherLogits:
    """Every member's logits per stay; `logits[member]` is [stays, labels], NaN where undefined."""

    stay_ids: np.ndarray            # sorted, int64
    split: np.ndarray
    has_cxr: np.ndarray
    labels: np.ndarray              # [stays, labels] 0/1
    label_names: list[str]
    members: dict[str, str]         # member -> modality
    logits: dict[str, np.ndarray]

    def ensemble(self, modality: str) -> np.ndarray:
        """[stays, members, labels]: the logits of `modality`'s members, in member order."""
        names = [m for m, mod in self.members.items() if mod == modality]
        return np.stack([self.logits[m] for m in names], axis=1)

    def _lookup(self, stay_ids: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(row of each stay in the sorted table, clipped to a valid row; mask of stays it lacks)."""
        wanted = np.asarray(stay_ids, dtype=np.int64)
        rows = np.minimum(np.searchsorted(self.stay_ids, wanted), len(self.stay_ids) - 1)
        return rows, self.stay_ids[rows] != wanted

    def rows(self, stay_ids: np.ndarray | torch.Tensor) -> np.ndarray:
        """Row of each stay in the table; a stay the table lacks is a one-line error."""
        rows, missing = self._lookup(stay_ids)
        if missing.any():
            raise PipelineInputError(f"teacher logits: no row for {int(missing.sum())} stays of a batch "
                                     "(expected every stay of the task; rerun the teachers stage)")
        return rows

    def check_against(self, stay_ids: np.ndarray, labels: np.ndarray, has_cxr: np.ndarray,
                      label_names: list[str], where: str) -> None:
        """Refuse a table that does not describe these stays: other labels, a missing stay,
        other outcomes, or a teacher without a logit where its modality is present."""
        if list(self.label_names) != list(label_names):
            raise PipelineInputError(f"{where}: labels {', '.join(self.label_names)} do not match the task's "
                                     f"{', '.join(label_names)} (rerun the teachers stage)")
        for modality in MODALITIES:
            if modality not in self.members.values():
                raise PipelineInputError(f"{where}: no {modality} teacher (expected at least one enabled "
                                         f"teachers.members entry with modality: {modality})")
        position, absent = self._lookup(stay_ids)
        if absent.any():
            raise PipelineInputError(f"{where}: {int(absent.sum())} of {len(stay_ids)} training stays are "
                                     "missing (the teachers were trained on other data; rerun the teachers stage)")
        if not np.array_equal(self.labels[position], labels):
            differ = int((self.labels[position] != labels).any(axis=1).sum())
            raise PipelineInputError(f"{where}: y_<label> differs from the task's labels on {differ} training "
                                     "stays (rerun the teachers stage)")
        for member, modality in self.members.items():
            values = self.logits[member][position]
            needed = has_cxr.astype(bool) if modality == IMAGE_HEAD else np.ones(len(stay_ids), dtype=bool)
            if not np.isfinite(values[needed]).all():
                raise PipelineInputError(f"{where}: member {member!r} has no finite logit for "
                                         f"{int((~np.isfinite(values[needed])).any(axis=1).sum())} training "
                                         f"stays with its modality ({modality})")


def logits_frame(stay_ids: np.ndarray, split: np.ndarray, has_cxr: np.ndarray, labels: np.ndarray,
                 label_names: list[str], member_logits: Mapping[str, np.ndarray]) -> pd.DataFrame:
    order = np.argsort(stay_ids, kind="stable")
    columns: dict[str, object] = {"stay_id": np.asarray(stay_ids, dtype=np.int64)[order],
                                  "split": np.asarray(split, dtype=object)[order],
                                  "has_cxr": np.asarray(has_cxr, dtype=bool)[order]}
    for k, label in enumerate(label_names):
        columns[f"y_{label}"] = np.asarray(labels, dtype=np.float32)[order, k]
    for member, values in member_logits.items():
        for k, label in enumerate(label_names):
            columns[logit_column(member, label)] = np.asarray(values, dtype=np.float32)[order, k]
    return pd.DataFrame(columns)


def write_teacher_logits(path: str | Path, frame: pd.DataFrame, members: Mapping[str, str],
                         label_names: list[str]) -> None:
    """The logits table with its members in the metadata, written atomically."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(table.schema.metadata or {}),
            METADATA_KEY: json.dumps({"members": dict(members), "labels": list(label_names)}).encode()}
    write_parquet(path, table.replace_schema_metadata(meta))


def read_teacher_logits(path: str | Path, task: str) -> TeacherLogits:
    """Load and validate the table; a missing file names the stage that writes it."""
    path = Path(path)
    if not path.is_file():
        raise StaleInputError(f"{path}: teacher logits not found: run `dvc repro teachers@{task}` "
                              f"(or python -m training.teachers --task {task})")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise PipelineInputError(f"{path}: no 'teachers' metadata (expected the file written by teachers@{task})")
    meta = json.loads(raw)
    members, label_names = dict(meta["members"]), list(meta["labels"])
    frame = table.to_pandas()
    expected = ["stay_id", "split", "has_cxr", *(f"y_{label}" for label in label_names),
                *(logit_column(m, label) for m in members for label in label_names)]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise PipelineInputError(f"{path}: missing column {missing[0]!r} (expected {expected[0]}, split, "
                                 "has_cxr, y_<label>, z/<member>/<label>)")
    if frame["stay_id"].duplicated().any():
        raise PipelineInputError(f"{path}: stay_id {int(frame.loc[frame['stay_id'].duplicated(), 'stay_id'].iloc[0])}"
                                 " appears twice (expected one row per stay)")
    frame = frame.sort_values("stay_id", kind="stable").reset_index(drop=True)
    return TeacherLogits(
        stay_ids=frame["stay_id"].to_numpy(np.int64), split=frame["split"].astype(str).to_numpy(),
        has_cxr=frame["has_cxr"].to_numpy(bool),
        labels=frame[[f"y_{label}" for label in label_names]].to_numpy(np.float32),
        label_names=label_names, members=members,
        logits={m: frame[[logit_column(m, label) for label in label_names]].to_numpy(np.float32, na_value=np.nan)
                for m in members})
