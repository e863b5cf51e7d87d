"""extract_ehr's logic: raw chartevents + labevents -> events.parquet, stays.parquet, summary.

Memory: the scan is bounded by the CSV block size (a few blocks in flight). Matched rows
(17 variables; a fraction of chartevents) are buffered (500 k rows) and written into LZ4 Arrow IPC
buckets, each holding a contiguous range of stay_ids; there are at least `sort_buckets` and
one per ~128 MB of raw event CSV, so a bucket holds the matched rows of ~128 MB of input
whatever the table size. The final sort loads one bucket at a time, and concatenating the
sorted buckets in order gives the global (stay_id, hours) order.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from data_prep.ehr.harmonize import ExtractCounts, ItemLookup, harmonize
from data_prep.ehr.stays import load_stays
from data_prep.ehr.streaming import prefetched, stream_filtered
from data_prep.ehr.variables import VariableMap
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
                block_size_mb: float = 4, inflater: str = "isal_threaded", sort_buckets: int = 4) -> dict:
    """Write events.parquet, stays.parquet and extract_summary.json into `out_dir` (atomically)."""
    stays = load_stays(root)
    stay_times = StayTimes(stays)
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
            lookup = ItemLookup(items, variable_map.variables, spec.column_types["itemid"])
            blocks = stream_filtered(spec, path, EVENT_COLUMNS[spec.name], list(items), block_size_mb,
                                     inflater, counts.rows_scanned,
                                     prepare=partial(block_events, spec=spec, lookup=lookup,
                                                     stays=stay_times, counts=counts),
                                     timestamp_columns=("charttime",))
            for events in tqdm(blocks, desc=f"scan {spec.name}", unit="block", leave=False):
                buckets.write(events)
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


def block_events(batch: pa.RecordBatch, spec: TableSpec, lookup: ItemLookup,
                 stays: StayTimes, counts: ExtractCounts) -> pa.Table:
    """One block's matched rows as harmonized events attached to stays, with hours since intime."""
    if batch.num_rows == 0:
        return BUCKET_SCHEMA.empty_table()
    charttime = batch.column("charttime").cast(pa.int64())  # seconds: parsed by the CSV reader
    events = harmonize(batch.column("itemid"), batch.column("value"), batch.column("valuenum"), lookup, counts)
    seconds = charttime.to_numpy(zero_copy_only=False)[events.rows]
    if spec.name == "chartevents":
        keys = batch.column("stay_id").take(pa.array(events.rows)).fill_null(-1).to_numpy(zero_copy_only=False)
        stay, intime = stays.by_stay_id(keys)
    else:
        keys = batch.column("subject_id").take(pa.array(events.rows)).fill_null(-1).to_numpy(zero_copy_only=False)
        stay, intime = stays.by_subject_time(keys, seconds)
    attached = np.flatnonzero(stay >= 0)
    counts.unattached[spec.name] += len(stay) - len(attached)
    return pa.table({"stay_id": pa.array(stay[attached], pa.int64()),
                     "hours": pa.array(((seconds[attached] - intime[attached]) / 3600.0).astype(np.float32)),
                     "code": pa.array(events.code[attached], pa.int16()),
                     "value": pa.array(events.value[attached].astype(np.float32)),
                     "text": batch.column("value").take(pa.array(events.rows[attached],
                                                                  mask=~events.has_text[attached]))},
                    schema=BUCKET_SCHEMA)


class StayTimes:
    """The stays' ids and ICU windows as sorted arrays, for attaching events without a join."""

    def __init__(self, stays: pd.DataFrame) -> None:
        order = np.argsort(stays["stay_id"].to_numpy(np.int64), kind="stable")
        self.stay_id = stays["stay_id"].to_numpy(np.int64)[order]
        self.intime = _seconds(stays["intime"])[order]
        self.outtime = _seconds(stays["outtime"])[order]
        # the same stays grouped by subject, each subject's stays in stay_id order
        by_subject = np.argsort(stays["subject_id"].to_numpy(np.int64)[order], kind="stable")
        self.subject_of = stays["subject_id"].to_numpy(np.int64)[order][by_subject]
        self.by_subject = by_subject
        self.max_stays_per_subject = int(np.unique(self.subject_of, return_counts=True)[1].max(initial=0))

    def by_stay_id(self, stay_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stay_id, intime) per event; stay -1 where the stay is unknown."""
        if not len(self.stay_id):
            return np.full(len(stay_id), -1, np.int64), np.zeros(len(stay_id), np.int64)
        position = np.minimum(np.searchsorted(self.stay_id, stay_id), len(self.stay_id) - 1)
        return np.where(self.stay_id[position] == stay_id, stay_id, -1), self.intime[position]

    def by_subject_time(self, subject_id: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labs often lack hadm_id: a lab row belongs to the subject's stay whose [intime, outtime]
        holds it (the lowest stay_id if several do); stay -1 where none does."""
        first = np.searchsorted(self.subject_of, subject_id, side="left")
        last = np.searchsorted(self.subject_of, subject_id, side="right")
        stay = np.full(len(subject_id), -1, np.int64)
        intime = np.zeros(len(subject_id), np.int64)
        for k in range(self.max_stays_per_subject):
            candidate = first + k
            open_rows = np.flatnonzero((candidate < last) & (stay < 0))
            if not len(open_rows):
                break
            position = self.by_subject[candidate[open_rows]]
            inside = (seconds[open_rows] >= self.intime[position]) & (seconds[open_rows] <= self.outtime[position])
            stay[open_rows[inside]] = self.stay_id[position[inside]]
            intime[open_rows[inside]] = self.intime[position[inside]]
        return stay, intime


def _seconds(times: pd.Series) -> np.ndarray:
    return times.to_numpy("datetime64[s]").astype(np.int64)


class StayBuckets:
    """Arrow IPC files that each hold the events of one contiguous range of stay_ids.

    Temporary (read once, then deleted), so the fast LZ4 IPC format rather than parquet.
    """

    def __init__(self, directory: Path, stay_ids: np.ndarray, n_buckets: int) -> None:
        ordered = np.unique(stay_ids)
        self.n_buckets = max(1, min(int(n_buckets), len(ordered)))
        self.edges = ordered[np.linspace(0, len(ordered), self.n_buckets, endpoint=False).astype(int)] \
            if len(ordered) else np.zeros(1, dtype=np.int64)
        self.directory = directory
        directory.mkdir(parents=True)
        self.writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.flush_rows = 500_000

    def path(self, bucket: int) -> Path:
        return self.directory / f"bucket_{bucket:04d}.arrow"

    def write(self, events: pa.Table) -> None:
        """Buffer rows and flush them in large batches, so each bucket gets big record batches."""
        if not events.num_rows:
            return
        self.pending.append(events)
        self.pending_rows += events.num_rows
        if self.pending_rows >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        events = pa.concat_tables(self.pending).combine_chunks()
        self.pending, self.pending_rows = [], 0
        bucket_of_row = np.searchsorted(self.edges, events.column("stay_id").to_numpy(), side="right") - 1
        order = np.argsort(bucket_of_row, kind="stable")
        buckets, starts = np.unique(bucket_of_row[order], return_index=True)
        for bucket, rows in zip(buckets, np.split(order, starts[1:]), strict=True):
            if bucket not in self.writers:
                options = pa.ipc.IpcWriteOptions(compression="lz4")
                self.writers[bucket] = pa.ipc.new_file(self.path(bucket), BUCKET_SCHEMA, options=options)
            self.writers[bucket].write_table(events.take(pa.array(rows)))

    def read_in_order(self) -> Iterator[pa.Table]:
        self.flush()
        for writer in self.writers.values():
            writer.close()
        for bucket in range(self.n_buckets):
            if bucket in self.writers:
                with pa.memory_map(str(self.path(bucket))) as source:
                    table = pa.ipc.open_file(source).read_all()
                yield table
                del table
                self.path(bucket).unlink()
        shutil.rmtree(self.directory)


def write_sorted_events(buckets: StayBuckets, path: Path, variable_map: VariableMap,
                        counts: ExtractCounts) -> dict[int, int]:
    """Sort each bucket by (stay_id, hours), derive GCS total if asked, append to events.parquet.

    A background thread reads and sorts the next bucket while this one writes the last
    (1.6 s of 9 on the 20 M-row benchmark input; bench/RESULTS.md).
    """
    schema = pa.schema([("stay_id", pa.int64()), ("hours", pa.float32()),
                        ("variable", pa.dictionary(pa.int32(), pa.string())),
                        ("value", pa.float32()), ("text", pa.string())])
    dictionary = pa.array(variable_map.names, pa.string())
    n_events: dict[int, int] = {}
    # dictionary pages only where values repeat (names, category texts): cheaper to write
    with pq.ParquetWriter(path, schema, use_dictionary=["variable", "text"]) as writer:
        ordered = prefetched(sorted_buckets(buckets, variable_map, counts), 1)
        for events in tqdm(ordered, total=buckets.n_buckets, desc="sort events", unit="bucket", leave=False):
            stay_id = events.column("stay_id").to_numpy()
            codes = events.column("code").cast(pa.int32()).combine_chunks()
            writer.write_table(pa.table({
                "stay_id": events.column("stay_id"), "hours": events.column("hours"),
                "variable": pa.DictionaryArray.from_arrays(codes, dictionary),
                "value": events.column("value"), "text": events.column("text")}, schema=schema))
            ids, sizes = np.unique(stay_id, return_counts=True)
            n_events.update(zip(ids.tolist(), sizes.tolist(), strict=True))
    return n_events


def sorted_buckets(buckets: StayBuckets, variable_map: VariableMap, counts: ExtractCounts) -> Iterator[pa.Table]:
    """Each bucket in stay_id order, its rows sorted by (stay_id, hours), GCS totals added if asked."""
    for events in buckets.read_in_order():
        if variable_map.derive_gcs_total:
            derived = derived_gcs_rows(events, variable_map.names)
            counts.derived["gcs_total"] += derived.num_rows
            counts.rows_kept["gcs_total"] += derived.num_rows
            events = pa.concat_tables([events, derived])
        # Arrow's sort is stable, as pandas' was: ties keep bucket (file, then variable name) order
        yield events.take(pc.sort_indices(events, sort_keys=[("stay_id", "ascending"), ("hours", "ascending")]))


def derived_gcs_rows(events: pa.Table, names: list[str]) -> pa.Table:
    """derive_gcs_total on the bucket's GCS part rows only (a small pandas frame), as bucket rows."""
    part_codes = pa.array([names.index(name) for name in GCS_PARTS], pa.int16())
    parts = events.filter(pc.is_in(events.column("code"), value_set=part_codes))
    frame = pd.DataFrame({column: parts.column(column).to_numpy() for column in ("stay_id", "hours", "code", "value")})
    derived = derive_gcs_total(frame.assign(text=None), names)
    return pa.table({"stay_id": pa.array(derived["stay_id"].to_numpy(), pa.int64()),
                     "hours": pa.array(derived["hours"].to_numpy(), pa.float32()),
                     "code": pa.array(derived["code"].to_numpy(), pa.int16()),
                     "value": pa.array(derived["value"].to_numpy(), pa.float32()),
                     "text": pa.array(derived["text"].to_numpy(), pa.string())}, schema=BUCKET_SCHEMA)


def derive_gcs_total(events: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """GCS total = eye + motor + verbal scores charted at the same time (MetaVision has no total)."""
    part_codes = [names.index(name) for name in GCS_PARTS]
    parts = events[events["code"].isin(part_codes)]
    if parts.empty:
        return events.iloc[:0]
    # simultaneous charts of one part: the larger score, as discretize keeps (order-independent)
    wide = parts.pivot_table(index=["stay_id", "hours"], columns="code", values="value", aggfunc="max")
    if not set(part_codes) <= set(wide.columns):
        return events.iloc[:0]
    total = wide[part_codes].dropna().sum(axis=1).astype(int)
    return pd.DataFrame({"stay_id": total.index.get_level_values("stay_id").astype(np.int64),
                         "hours": total.index.get_level_values("hours").astype(np.float32),
                         "code": np.int16(names.index("gcs_total")), "value": total.to_numpy(np.float32),
                         "text": total.astype(str).to_numpy()})
