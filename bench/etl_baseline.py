"""The predecessors' EHR extraction, compactly, as the benchmark's baseline (bench/etl.py (d)).

mimic3-benchmarks / MedFuse read chartevents with csv.DictReader row by row and append each
kept row to one CSV per subject; later each stay's time series is read back with pandas and
discretized stay by stay in Python. Re-implemented here from that description (no code
copied) to time the approach on the same input.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from data_prep.csvio import open_text
from data_prep.ehr.variables import VariableMap


def split_by_subject(events_path: Path, out_dir: Path, itemids: set[int], max_rows: int | None = None) -> int:
    """Row-by-row pass: keep mapped itemids, append each row to <out_dir>/<subject>/events.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["stay_id", "charttime", "itemid", "value", "valuenum"]
    handles: dict[str, tuple] = {}
    started: set[str] = set()
    rows = 0
    with open_text(events_path) as source:
        for row in csv.DictReader(source):
            rows += 1
            if max_rows is not None and rows > max_rows:
                break
            if int(row["itemid"]) not in itemids:
                continue
            subject = row["subject_id"]
            if subject not in handles:
                if len(handles) >= 500:  # bounded number of open files, as a real run needs
                    for old_handle, _ in handles.values():
                        old_handle.close()
                    handles.clear()
                (out_dir / subject).mkdir(exist_ok=True)
                handle = open(out_dir / subject / "events.csv", "a", newline="")  # noqa: SIM115
                writer = csv.DictWriter(handle, fieldnames=fields)
                if subject not in started:
                    writer.writeheader()
                    started.add(subject)
                handles[subject] = (handle, writer)
            handles[subject][1].writerow({k: row[k] for k in fields})
    for handle, _ in handles.values():
        handle.close()
    return min(rows, max_rows or rows)


def discretize_stay(subject_dir: Path, stay_id: int, intime: pd.Timestamp, hours: float,
                    variable_map: VariableMap, item_to_variable: dict[int, str]) -> list[list]:
    """Read the subject's events with pandas, keep the stay, and bin it row by row (last value)."""
    events = pd.read_csv(subject_dir / "events.csv")
    events = events[events["stay_id"] == stay_id]
    events["hours"] = (pd.to_datetime(events["charttime"]) - intime).dt.total_seconds() / 3600
    names = variable_map.names
    n_bins = max(1, math.ceil(hours))
    grid = [[None] * len(names) for _ in range(n_bins)]
    for _, event in events.sort_values("hours").iterrows():
        b = int(event["hours"])
        if 0 <= b < n_bins and event["itemid"] in item_to_variable:
            grid[b][names.index(item_to_variable[event["itemid"]])] = event["valuenum"]
    last = [None] * len(names)
    for row in grid:  # forward fill then normal values
        for j, value in enumerate(row):
            if value is None or value != value:
                row[j] = last[j] if last[j] is not None else variable_map.variables[j].normal
            else:
                last[j] = value
    return grid
