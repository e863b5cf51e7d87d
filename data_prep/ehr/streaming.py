"""Reading raw MIMIC tables with pyarrow: small tables whole, event tables as a bounded stream.

chartevents is ~300 M rows, so it is never materialized: pyarrow's streaming CSV reader
parses one block (`block_size_mb`) at a time with only the needed columns and explicit
types, and the itemid filter runs on each block with pyarrow.compute before anything is
converted to Python or pandas. Memory is therefore bounded by the block size.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from data_prep.csvio import open_binary
from data_prep.errors import PipelineInputError
from data_prep.schemas import TIMESTAMP_FORMAT, TableSpec

log = logging.getLogger(__name__)
DATE_FORMAT = "%Y-%m-%d"
INFLATERS = ("isal", "pyarrow")


def convert_options(spec: TableSpec, columns: list[str]) -> pacsv.ConvertOptions:
    types = spec.column_types
    return pacsv.ConvertOptions(include_columns=columns, column_types={c: types[c] for c in columns},
                                strings_can_be_null=True, quoted_strings_can_be_null=True)


def open_source(path: Path, inflater: str) -> pa.NativeFile | object:
    """What open_csv reads: isal's decompressed stream, or the path (pyarrow's own gzip)."""
    if inflater not in INFLATERS:
        raise PipelineInputError(f"data.ehr.inflater={inflater!r}: expected one of {INFLATERS}")
    return open_binary(path) if inflater == "isal" else pa.input_stream(str(path), compression="detect")


def read_table(spec: TableSpec, root: str | Path, columns: list[str]) -> pa.Table:
    """A small table (icustays, admissions, patients, diagnoses) read whole, header-checked."""
    path = spec.locate(root)
    spec.validate_header(path, columns)
    try:
        with open_binary(path) as handle:
            return pacsv.read_csv(handle, convert_options=convert_options(spec, columns))
    except pa.ArrowInvalid as err:
        raise PipelineInputError(describe_arrow_error(path, spec, columns, err)) from None


def stream_filtered(spec: TableSpec, path: Path, columns: list[str], itemids: list[int],
                    block_size_mb: float, inflater: str, scanned: dict[str, int]) -> Iterator[pa.RecordBatch]:
    """Yield each block's rows whose itemid is in `itemids`; count scanned rows in `scanned`."""
    spec.validate_header(path, columns)
    value_set = pa.array(sorted(itemids), type=spec.column_types["itemid"])
    read_options = pacsv.ReadOptions(block_size=int(block_size_mb * 2**20))
    source = open_source(path, inflater)
    try:
        reader = pacsv.open_csv(source, read_options=read_options,
                                convert_options=convert_options(spec, columns))
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            scanned[spec.name] = scanned.get(spec.name, 0) + batch.num_rows
            keep = pc.is_in(batch.column("itemid"), value_set=value_set)
            yield batch.filter(keep)
    except pa.ArrowInvalid as err:
        raise PipelineInputError(describe_arrow_error(path, spec, columns, err)) from None
    finally:
        source.close()


def parse_timestamps(values: pa.Array | pa.ChunkedArray, path: Path, column: str,
                     formats: tuple[str, ...] = (TIMESTAMP_FORMAT,)) -> pa.Array:
    """Parse MIMIC timestamps with explicit formats (vectorized); a malformed value stops the stage.

    Empty fields stay null. Several formats are tried in order because `dod` is a date in some
    releases and a timestamp in others.
    """
    parsed = None
    for fmt in formats:
        attempt = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
        parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
    bad = pc.and_(pc.is_null(parsed), pc.is_valid(values))
    if pc.any(bad).as_py():
        example = pc.filter(values, bad)[0].as_py()
        expected = " or ".join(f.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")
                               .replace("%H", "HH").replace("%M", "MM").replace("%S", "SS") for f in formats)
        raise PipelineInputError(f"{path}: column {column!r} value {example!r} is not a timestamp "
                                 f"(expected {expected})")
    return parsed


def describe_arrow_error(path: Path, spec: TableSpec, columns: list[str], err: Exception) -> str:
    """Turn pyarrow's 'In CSV column #3: ...' into a line naming the file, column and type."""
    message = str(err).splitlines()[0]
    match = re.search(r"column #(\d+)", message)
    header = spec.read_header(path)
    if match and int(match.group(1)) < len(header) and header[int(match.group(1))] in columns:
        column = header[int(match.group(1))]
        return f"{path}: column {column!r}: {message} (expected {spec.column_types[column]})"
    return f"{path}: {message}"
