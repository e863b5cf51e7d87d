"""Reading raw MIMIC tables with pyarrow: small tables whole, event tables as a bounded stream.

chartevents is ~300 M rows, so it is never materialized: pyarrow's streaming CSV reader
parses one block (`block_size_mb`) at a time with only the needed columns and explicit
types, and the itemid filter runs on each block with pyarrow.compute before anything is
converted to Python or pandas. Memory is therefore bounded by the block size.

Event timestamps are parsed by the CSV reader itself (Arrow's ISO-8601 parser: 0.5 s instead of 1.2 s
for a strptime pass over the 20 M-row benchmark's strings afterwards; it rejects impossible dates such
as February 30); a malformed one stops the stage with one line naming the file, line and column.

A table with a header and no rows stops the stage too: an empty chartevents would otherwise
give a cohort with labs only, and nothing downstream would say so.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from isal import igzip_threaded

from data_prep.csvio import first_bad_line, open_binary, quoted, reading, value_check
from data_prep.errors import PipelineInputError
from data_prep.schemas import TIMESTAMP_FORMAT, TableSpec

log = logging.getLogger(__name__)
DATE_FORMAT = "%Y-%m-%d"
INFLATERS = ("isal", "isal_threaded", "pyarrow")
PREFETCH_BLOCKS = 2  # parsed blocks waiting for the consumer (memory: a few blocks)


def convert_options(spec: TableSpec, columns: list[str],
                    timestamp_columns: tuple[str, ...] = ()) -> pacsv.ConvertOptions:
    """Explicit types for `columns`; `timestamp_columns` become timestamp[s] (ISO 8601) in the reader."""
    types = {c: pa.timestamp("s") if c in timestamp_columns else spec.column_types[c] for c in columns}
    return pacsv.ConvertOptions(include_columns=columns, column_types=types, strings_can_be_null=True,
                                quoted_strings_can_be_null=True, timestamp_parsers=[pacsv.ISO8601])


def open_source(path: Path, inflater: str) -> pa.NativeFile | object:
    """What open_csv reads: pyarrow's own gzip stream, isal's, or isal's inflating in its own thread.

    isal_threaded overlaps inflate with parsing (a second core), the fastest on 2 cores.
    """
    if inflater not in INFLATERS:
        raise PipelineInputError(f"data.ehr.inflater={inflater!r}: expected one of {INFLATERS}")
    if inflater == "pyarrow" or path.suffix != ".gz":
        return pa.input_stream(str(path), compression="detect")
    if inflater == "isal_threaded":
        return igzip_threaded.open(path, "rb", threads=1)
    return open_binary(path)


def read_table(spec: TableSpec, root: str | Path, columns: list[str]) -> pa.Table:
    """A small table (icustays, admissions, patients, diagnoses) read whole, header-checked."""
    path = spec.locate(root)
    spec.validate_header(path, columns)
    try:
        with reading(path), open_binary(path) as handle:
            table = pacsv.read_csv(handle, convert_options=convert_options(spec, columns))
    except pa.ArrowInvalid as err:
        raise PipelineInputError(describe_arrow_error(path, spec, columns, err)) from None
    if table.num_rows == 0:
        raise PipelineInputError(empty_table_message(path, spec))
    return table


def empty_table_message(path: Path, spec: TableSpec) -> str:
    return f"{path}: a header but no data rows (expected the rows of MIMIC table {spec.name!r})"


def stream_filtered(spec: TableSpec, path: Path, columns: list[str], itemids: list[int],
                    block_size_mb: float, inflater: str, scanned: dict[str, int],
                    prepare: Callable[[pa.RecordBatch], object] | None = None,
                    timestamp_columns: tuple[str, ...] = ()) -> Iterator:
    """Yield each block's rows whose itemid is in `itemids` (passed through `prepare` if given);
    count scanned rows in `scanned`.

    Three stages overlap: inflate (isal's own thread), parse + filter (one background thread)
    and `prepare` (a second one), so the caller's work, the parse and the inflate each get
    a core when there are cores; pyarrow and numpy release the GIL for the heavy parts.
    """
    spec.validate_header(path, columns)
    value_set = pa.array(sorted(itemids), type=spec.column_types["itemid"])
    read_options = pacsv.ReadOptions(block_size=int(block_size_mb * 2**20))
    source = open_source(path, inflater)

    def filtered_blocks() -> Iterator[pa.RecordBatch]:
        reader = pacsv.open_csv(source, read_options=read_options,
                                convert_options=convert_options(spec, columns, timestamp_columns))
        for batch in reader:
            scanned[spec.name] = scanned.get(spec.name, 0) + batch.num_rows
            matched = batch.filter(pc.is_in(batch.column("itemid"), value_set=value_set))
            yield matched

    def prepared(blocks: Iterator[pa.RecordBatch]) -> Iterator:
        try:
            for block in blocks:
                yield prepare(block)
        finally:
            blocks.close()  # stops the parse thread when the consumer stops early

    blocks = prefetched(filtered_blocks(), PREFETCH_BLOCKS)
    if prepare is not None:
        blocks = prefetched(prepared(blocks), PREFETCH_BLOCKS)
    try:
        with reading(path):
            yield from blocks
    except pa.ArrowInvalid as err:
        raise PipelineInputError(describe_arrow_error(path, spec, columns, err, timestamp_columns)) from None
    finally:
        source.close()
    if not scanned.get(spec.name):
        raise PipelineInputError(empty_table_message(path, spec))


def prefetched(items: Iterator, depth: int) -> Iterator:
    """Run `items` in a background thread, at most `depth` ahead of the consumer.

    pyarrow's streaming CSV reader parses the next block only when asked, so without this
    the parse and the caller's per-block work take turns on one core; pyarrow releases the
    GIL while it inflates and parses, so the two overlap on two cores. Exceptions reach
    the consumer; a consumer that stops early stops the thread.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((done, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which re-raises
            slots.put((done, err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's own clean-up runs in the thread that ran it

    worker = threading.Thread(target=produce, name="csv-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)


def parse_timestamps(values: pa.Array | pa.ChunkedArray, path: Path, column: str,
                     formats: tuple[str, ...] = (TIMESTAMP_FORMAT,)) -> pa.Array:
    """Parse MIMIC timestamps with explicit formats (vectorized); a malformed value stops the stage.

    Empty fields stay null. Several formats are tried in order because `dod` is a date in some
    releases and a timestamp in others. Arrow's strptime rolls impossible dates over
    (2167-02-30 becomes March 2), so a parse counts only if it prints back as the input.
    """
    parsed = None
    for fmt in formats:
        attempt = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
        exact = pc.equal(pc.strftime(attempt, format=fmt), values)
        attempt = pc.if_else(pc.fill_null(exact, False), attempt, pa.scalar(None, attempt.type))
        parsed = attempt if parsed is None else pc.coalesce(parsed, attempt)
    bad = pc.and_(pc.is_null(parsed), pc.is_valid(values))
    if pc.any(bad).as_py():
        example = pc.filter(values, bad)[0].as_py()
        found = first_bad_line(path, column, value_check("timestamp", formats))
        where = f"line {found[0]}, " if found else ""
        raise PipelineInputError(f"{path}: {where}column {column!r}: {quoted(column, example)} is not a "
                                 f"valid timestamp (expected {readable_formats(formats)})")
    return parsed


def readable_formats(formats: tuple[str, ...]) -> str:
    return " or ".join(f.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")
                       .replace("%H", "HH").replace("%M", "MM").replace("%S", "SS") for f in formats)


def _kind_of(data_type: pa.DataType) -> str | None:
    if pa.types.is_integer(data_type):
        return "integer"
    if pa.types.is_floating(data_type):
        return "number"
    if pa.types.is_timestamp(data_type):
        return "timestamp"
    return None


def describe_arrow_error(path: Path, spec: TableSpec, columns: list[str], err: Exception,
                         timestamp_columns: tuple[str, ...] = ()) -> str:
    """Turn pyarrow's error into a line naming the file, line, column and expected type.

    pyarrow quotes the whole raw row for a wrong number of fields and gives no line number,
    so the line is found by re-reading the file up to it (error path only) and the row
    text is never repeated: it holds subject, admission and stay identifiers.
    """
    message = str(err).splitlines()[0]
    match = re.search(r"column #(\d+)", message)
    header = spec.read_header(path)
    if match and int(match.group(1)) < len(header) and header[int(match.group(1))] in columns:
        column = header[int(match.group(1))]
        is_time = column in timestamp_columns
        expected = f"a timestamp {readable_formats((TIMESTAMP_FORMAT,))}" if is_time else spec.column_types[column]
        kind = "timestamp" if is_time else _kind_of(spec.column_types[column])
        found = first_bad_line(path, column, value_check(kind, (TIMESTAMP_FORMAT,))) if kind else None
        if found:
            return (f"{path}: line {found[0]}, column {column!r}: {quoted(column, found[1])} does not parse "
                    f"(expected {expected})")
        value = re.search(r"invalid value '([^']*)'", message)
        return f"{path}: column {column!r}: {quoted(column, value.group(1) if value else None)} does not " \
               f"parse (expected {expected})"
    counts = re.search(r"Expected (\d+) columns, got (\d+)", message)
    if counts:
        found = first_bad_line(path)
        where = f"line {found[0]}: " if found else ""
        return (f"{path}: {where}{counts.group(2)} fields where the header has {counts.group(1)} "
                f"(a broken or shifted row)")
    return f"{path}: {message.split(': ', 1)[0]}"
