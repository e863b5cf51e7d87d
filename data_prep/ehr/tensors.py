"""ehr_tensors' logic: a task's cohort + events -> values.npy, index.parquet, features.json,
normalization.json.

Stays are processed in chunks of contiguous stay_ids, reading only those stays' events
(row-group pruning on the sorted events.parquet), so memory is bounded by the chunk. Two
passes: the first accumulates training-split statistics, the second writes the normalized
float16 rows into a memory-mapped values.npy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep.ehr.discretize import BIN_EPSILON, hourly_features, stay_lengths, window_hours
from data_prep.ehr.normalize import RunningMoments, normalization_record, standardize
from data_prep.ehr.variables import VariableMap
from data_prep.errors import PipelineInputError
from data_prep.io import atomic_path

EVENT_COLUMNS = ["stay_id", "hours", "variable", "value", "text"]


def build_tensors(events_path: str | Path, labels_path: str | Path, out_dir: str | Path,
                  variable_map: VariableMap, bin_hours: float = 1.0, chunk_stays: int = 4000,
                  chunk_events: int = 1_000_000) -> dict:
    """Write the task's tensors into `out_dir` (atomically); return a small summary."""
    for path in (Path(events_path), Path(labels_path)):
        if not path.is_file():
            raise PipelineInputError(f"{path}: not found (run extract_ehr and build_tasks first)")
    labels = pd.read_parquet(labels_path, columns=["stay_id", "split", "intime", "window_end"])
    labels = labels.sort_values("stay_id", ignore_index=True)
    lengths = stay_lengths(labels["intime"], labels["window_end"], bin_hours)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    names = variable_map.feature_names()
    continuous = [i for i, n in enumerate(names) if n in {v.name for v in variable_map.variables
                                                         if not v.is_categorical}]
    chunks = stay_chunks(_events_per_stay(Path(events_path), labels["stay_id"]), chunk_stays, chunk_events)

    moments = RunningMoments(len(continuous))
    for chunk, values in _chunk_features(events_path, labels, lengths, chunks, variable_map, bin_hours,
                                         only_split="train", desc="train statistics"):
        train_rows = np.repeat((labels["split"].to_numpy()[chunk] == "train"), lengths[chunk])
        moments.update(values[train_rows][:, continuous])
    mean, std = moments.mean_std()

    with atomic_path(out_dir) as target:
        target.mkdir(parents=True)
        array = np.lib.format.open_memmap(target / "values.npy", mode="w+", dtype=np.float16,
                                          shape=(int(offsets[-1]), len(names)))
        for chunk, values in _chunk_features(events_path, labels, lengths, chunks, variable_map, bin_hours,
                                             desc="tensors"):
            array[offsets[chunk.start]:offsets[chunk.stop]] = standardize(values, np.array(continuous), mean, std)
        array.flush()
        del array
        index = pa.table({"stay_id": pa.array(labels["stay_id"], pa.int64()),
                          "offset": pa.array(offsets[:-1], pa.int64()), "length": pa.array(lengths, pa.int64()),
                          "split": pa.array(labels["split"].astype(str), pa.string())})
        pq.write_table(index, target / "index.parquet")
        (target / "features.json").write_text(json.dumps(names, indent=1) + "\n")
        record = normalization_record([names[i] for i in continuous], mean, std, moments.count)
        (target / "normalization.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return {"stays": len(labels), "rows": int(offsets[-1]), "features": len(names)}


def stay_chunks(events_per_stay: np.ndarray, max_stays: int, max_events: int) -> list[slice]:
    """Consecutive stays, at most `max_stays` and about `max_events` events per chunk (>= 1 stay)."""
    chunks, start, events = [], 0, 0
    for position, n_events in enumerate(events_per_stay):
        if position > start and (position - start >= max_stays or events + n_events > max_events):
            chunks.append(slice(start, position))
            start, events = position, 0
        events += int(n_events)
    if start < len(events_per_stay):
        chunks.append(slice(start, len(events_per_stay)))
    return chunks


def _events_per_stay(events_path: Path, stay_ids: pd.Series) -> np.ndarray:
    """n_events from stays.parquet beside events.parquet (extract_ehr writes both); else unknown (0)."""
    stays_path = events_path.parent / "stays.parquet"
    if not stays_path.is_file():
        return np.zeros(len(stay_ids), dtype=np.int64)
    counts = pd.read_parquet(stays_path, columns=["stay_id", "n_events"]).set_index("stay_id")["n_events"]
    return stay_ids.map(counts).fillna(0).to_numpy(np.int64)


def _chunk_features(events_path, labels: pd.DataFrame, lengths: np.ndarray, chunks: list[slice],
                    variable_map: VariableMap, bin_hours: float, only_split: str | None = None,
                    desc: str = "") -> Iterator[tuple[slice, np.ndarray]]:
    stay_ids = labels["stay_id"].to_numpy()
    splits = labels["split"].to_numpy()
    end_hours = window_hours(labels["intime"], labels["window_end"])
    for chunk in tqdm(chunks, desc=desc, unit="chunk", leave=False):
        if only_split is not None and not (splits[chunk] == only_split).any():
            continue
        ids = stay_ids[chunk]
        events = read_events(events_path, ids)
        yield chunk, hourly_features(events, ids, lengths[chunk], variable_map, bin_hours, end_hours[chunk])


def read_events(events_path: str | Path, stay_ids: np.ndarray) -> pd.DataFrame:
    """The events of `stay_ids` (sorted), in file order; row groups outside their range are skipped."""
    table = pq.read_table(events_path, columns=EVENT_COLUMNS,
                          filters=[("stay_id", ">=", int(stay_ids[0])), ("stay_id", "<=", int(stay_ids[-1])),
                                   ("hours", ">", -BIN_EPSILON)])
    events = table.to_pandas()
    return events[events["stay_id"].isin(stay_ids)]
