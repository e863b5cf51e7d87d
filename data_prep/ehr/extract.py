"""extract_ehr's logic: raw chartevents + labevents -> events.parquet, stays.parquet, summary.

Memory: the scan is bounded by the CSV block size (a few blocks in flight). Matched rows
(17 variables; a fraction of chartevents) are buffered (500 k rows) and written into parquet
buckets, each holding a contiguous range of stay_ids; there are at least `sort_buckets` and
one per ~128 MB of raw event CSV, so a bucket holds the matched rows of ~128 MB of input
whatever the table size. The final sort loads one bucket at a time, and concatenating the
sorted buckets in order gives the global (stay_id, hours) order.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep.ehr.harmonize import ExtractCounts, harmonize
from data_prep.ehr.stays import load_stays
from data_prep.ehr.streaming import parse_timestamps, stream_filtered
from data_prep.ehr.variables import Variable, VariableMap
from data_prep.io import atomic_path, write_json
from data_prep.schemas import CHARTEVENTS, LABEVENTS, TableSpec

log = logging.getLogger(__name__)

# in the buckets a variable is its index in the variable map (cheaper than strings per row)
BUCKET_SCHEMA = pa.schema([("stay_id", pa.int64()), ("hours", pa.float32()), ("code", pa.int16()),
                           ("value", pa.float32()), ("text", pa.string())])
EVENT_COLUMNS = {"chartevents": ["stay_id", "charttime", "itemid", "value", "valuenum"],
                 "labevents": ["subject_id", "charttime", "itemid", "value", "valuenum"]}
GCS_PARTS = ("gcs_eye_opening", "gcs_motor_response", "gcs_verbal_response")


def extract_ehr(root: str | Path, out_dir: str | Path, variable_map: VariableMap, *,
                block_size_mb: float = 4, inflater: str = "pyarrow", sort_buckets: int = 4) -> dict:
    """Write events.parquet, stays.parquet and extract_summary.json into `out_dir` (atomically)."""
    stays = load_stays(root)
    counts = ExtractCounts()
    with atomic_path(out_dir) as target:
        target.mkdir(parents=True)
        n_buckets = max(int(sort_buckets), estimated_buckets(root))
        buckets = StayBuckets(target / ".buckets", stays["stay_id"].to_numpy(), n_buckets)
        for spec in (CHARTEVENTS, LABEVENTS):
            items = variable_map.items_of(spec.name)
            if not items:
                continue
            path = spec.locate(root)
            batches = stream_filtered(spec, path, EVENT_COLUMNS[spec.name], list(items), block_size_mb,
                                      inflater, counts.rows_scanned)
            for batch in tqdm(batches, desc=f"scan {spec.name}", unit="block", leave=False):
                buckets.write(block_events(batch, spec, path, items, stays, counts, variable_map.variables))
        n_events = write_sorted_events(buckets, target / "events.parquet", variable_map, counts)
        stays["n_events"] = stays["stay_id"].map(n_events).fillna(0).astype(np.int64)
        pq.write_table(seconds_timestamps(pa.Table.from_pandas(stays, preserve_index=False)),
                       target / "stays.parquet")
        summary = {"variable_map": variable_map.name, "block_size_mb": block_size_mb,
                   "inflater": inflater, "sort_buckets": buckets.n_buckets, "stays": len(stays),
                   "events": int(sum(n_events.values())), **counts.as_dict()}
        write_json(target / "extract_summary.json", summary)
    return summary


RAW_MB_PER_BUCKET = 128   # raw (decompressed) event CSV per sort bucket
GZIP_RATIO = 6            # typical CSV.GZ compression of MIMIC's event tables


def estimated_buckets(root: str | Path) -> int:
    """Enough sort buckets that each holds the matched rows of ~RAW_MB_PER_BUCKET of raw CSV."""
    raw_bytes = 0
    for spec in (CHARTEVENTS, LABEVENTS):
        path = spec.locate(root)
        raw_bytes += path.stat().st_size * (GZIP_RATIO if path.suffix == ".gz" else 1)
    return int(np.ceil(raw_bytes / (RAW_MB_PER_BUCKET * 2**20)))


def seconds_timestamps(table: pa.Table) -> pa.Table:
    """MIMIC times have whole seconds: timestamp[s] (parquet itself stores it as milliseconds)."""
    return table.cast(pa.schema([pa.field(f.name, pa.timestamp("s")) if pa.types.is_timestamp(f.type) else f
                                 for f in table.schema]))


def block_events(batch: pa.RecordBatch, spec: TableSpec, path: Path, items: dict[int, tuple[Variable, object]],
                 stays: pd.DataFrame, counts: ExtractCounts, variable_order: tuple[Variable, ...]) -> pd.DataFrame:
    """One block's matched rows as harmonized events attached to stays, with hours since intime."""
    if batch.num_rows == 0:
        return _empty_events()
    charttime = parse_timestamps(batch.column("charttime"), path, "charttime").cast(pa.int64())
    categorical = pa.array([i for i, (var, _) in items.items() if var.is_categorical], pa.int32())
    # only categorical rows and rows without valuenum need the text column in pandas
    need_text = pc.or_(pc.is_in(batch.column("itemid"), value_set=categorical), pc.is_null(batch.column("valuenum")))
    text = pc.if_else(need_text, batch.column("value"), pa.scalar(None, pa.string()))
    key = "stay_id" if spec.name == "chartevents" else "subject_id"
    frame = pd.DataFrame({key: batch.column(key).to_numpy(zero_copy_only=False),
                          "charttime": charttime.to_numpy(zero_copy_only=False),
                          "itemid": batch.column("itemid").to_numpy(zero_copy_only=False),
                          "value": text.to_pandas(), "valuenum": batch.column("valuenum").to_pandas()})
    events = harmonize(frame, items, counts)
    code_of_name = {var.name: code for code, var in enumerate(variable_order)}
    code_of_item = {itemid: code_of_name[var.name] for itemid, (var, _) in items.items()}
    events["code"] = events["itemid"].map(code_of_item).to_numpy(np.int16) if len(events) else np.int16(0)
    attach = _attach_by_stay_id if spec.name == "chartevents" else _attach_by_subject_time
    attached = attach(events, stays)
    counts.unattached[spec.name] += len(events) - len(attached)
    return attached


def _attach_by_stay_id(events: pd.DataFrame, stays: pd.DataFrame) -> pd.DataFrame:
    position = pd.Index(stays["stay_id"]).get_indexer(events["stay_id"].fillna(-1).astype(np.int64))
    known = position >= 0
    intime = _seconds(stays["intime"])[position[known]]
    events = events.loc[known]
    return _event_frame(events["stay_id"].to_numpy(np.int64), events["charttime"].to_numpy() - intime, events)


def _attach_by_subject_time(events: pd.DataFrame, stays: pd.DataFrame) -> pd.DataFrame:
    """Labs often lack hadm_id: a lab row belongs to the subject's stay whose [intime, outtime] holds it."""
    windows = pd.DataFrame({"subject_id": stays["subject_id"].to_numpy(), "stay_id": stays["stay_id"].to_numpy(),
                            "intime": _seconds(stays["intime"]), "outtime": _seconds(stays["outtime"])})
    rows = events.reset_index(drop=True).rename_axis("row").reset_index()
    joined = rows.merge(windows, on="subject_id", how="inner")
    inside = joined[(joined["charttime"] >= joined["intime"]) & (joined["charttime"] <= joined["outtime"])]
    inside = inside.drop_duplicates("row", keep="first")
    return _event_frame(inside["stay_id"].to_numpy(np.int64),
                        inside["charttime"].to_numpy() - inside["intime"].to_numpy(), inside)


def _event_frame(stay_id: np.ndarray, seconds: np.ndarray, events: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"stay_id": stay_id, "hours": (seconds / 3600.0).astype(np.float32),
                         "code": events["code"].to_numpy(np.int16),
                         "value": events["value"].to_numpy(np.float32, na_value=np.nan),
                         "text": events["text"].to_numpy()})


def _seconds(times: pd.Series) -> np.ndarray:
    return times.to_numpy("datetime64[s]").astype(np.int64)


def _empty_events() -> pd.DataFrame:
    return BUCKET_SCHEMA.empty_table().to_pandas()


class StayBuckets:
    """Parquet files that each hold the events of one contiguous range of stay_ids."""

    def __init__(self, directory: Path, stay_ids: np.ndarray, n_buckets: int) -> None:
        ordered = np.unique(stay_ids)
        self.n_buckets = max(1, min(int(n_buckets), len(ordered)))
        self.edges = ordered[np.linspace(0, len(ordered), self.n_buckets, endpoint=False).astype(int)] \
            if len(ordered) else np.zeros(1, dtype=np.int64)
        self.directory = directory
        directory.mkdir(parents=True)
        self.writers: dict[int, pq.ParquetWriter] = {}
        self.pending: list[pd.DataFrame] = []
        self.pending_rows = 0
        self.flush_rows = 500_000

    def path(self, bucket: int) -> Path:
        return self.directory / f"bucket_{bucket:04d}.parquet"

    def write(self, events: pd.DataFrame) -> None:
        """Buffer rows and flush them in large batches, so each bucket gets big row groups."""
        if events.empty:
            return
        self.pending.append(events)
        self.pending_rows += len(events)
        if self.pending_rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        events = pd.concat(self.pending, ignore_index=True)
        self.pending, self.pending_rows = [], 0
        bucket_of_row = np.searchsorted(self.edges, events["stay_id"].to_numpy(), side="right") - 1
        for bucket, rows in events.groupby(bucket_of_row, sort=False):
            if bucket not in self.writers:
                self.writers[bucket] = pq.ParquetWriter(self.path(bucket), BUCKET_SCHEMA)
            self.writers[bucket].write_table(pa.Table.from_pandas(rows, schema=BUCKET_SCHEMA, preserve_index=False))

    def read_in_order(self):
        self.flush()
        for writer in self.writers.values():
            writer.close()
        for bucket in range(self.n_buckets):
            if bucket in self.writers:
                yield pq.read_table(self.path(bucket)).to_pandas()
        shutil.rmtree(self.directory)


def write_sorted_events(buckets: StayBuckets, path: Path, variable_map: VariableMap,
                        counts: ExtractCounts) -> dict[int, int]:
    """Sort each bucket by (stay_id, hours), derive GCS total if asked, append to events.parquet."""
    schema = pa.schema([("stay_id", pa.int64()), ("hours", pa.float32()),
                        ("variable", pa.dictionary(pa.int32(), pa.string())),
                        ("value", pa.float32()), ("text", pa.string())])
    dictionary = pa.array(variable_map.names, pa.string())
    n_events: dict[int, int] = {}
    with pq.ParquetWriter(path, schema) as writer:
        for events in tqdm(buckets.read_in_order(), total=buckets.n_buckets, desc="sort events",
                           unit="bucket", leave=False):
            if variable_map.derive_gcs_total:
                derived = derive_gcs_total(events, variable_map.names)
                counts.derived["gcs_total"] += len(derived)
                counts.rows_kept["gcs_total"] += len(derived)
                events = pd.concat([events, derived], ignore_index=True)
            events = events.sort_values(["stay_id", "hours"], kind="stable", ignore_index=True)
            codes = events["code"].to_numpy(np.int32)
            writer.write_table(pa.table({
                "stay_id": pa.array(events["stay_id"].to_numpy(), pa.int64()),
                "hours": pa.array(events["hours"].to_numpy(), pa.float32()),
                "variable": pa.DictionaryArray.from_arrays(pa.array(codes), dictionary),
                "value": pa.array(events["value"].to_numpy(), pa.float32(), from_pandas=True),
                "text": pa.array(events["text"], pa.string(), from_pandas=True)}, schema=schema))
            n_events.update(events["stay_id"].value_counts().to_dict())
    return n_events


def derive_gcs_total(events: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """GCS total = eye + motor + verbal scores charted at the same time (MetaVision has no total)."""
    part_codes = [names.index(name) for name in GCS_PARTS]
    parts = events[events["code"].isin(part_codes)]
    if parts.empty:
        return events.iloc[:0]
    wide = parts.pivot_table(index=["stay_id", "hours"], columns="code", values="value", aggfunc="last")
    if not set(part_codes) <= set(wide.columns):
        return events.iloc[:0]
    total = wide[part_codes].dropna().sum(axis=1).astype(int)
    return pd.DataFrame({"stay_id": total.index.get_level_values("stay_id").astype(np.int64),
                         "hours": total.index.get_level_values("hours").astype(np.float32),
                         "code": np.int16(names.index("gcs_total")), "value": total.to_numpy(np.float32),
                         "text": total.astype(str).to_numpy()})
