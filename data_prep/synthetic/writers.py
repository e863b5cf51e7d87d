"""Deterministic gzip CSV: same rows in, same bytes out (no timestamps or file names in headers).

Big tables are written in chunks through one compressed stream, so memory stays bounded by the
chunk. Values are pre-formatted strings or numbers; pyarrow writes them without quotes (it
refuses a value that would need quoting), small tables that may hold commas go through pandas
with minimal quoting, as MIMIC's own files are quoted.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from data_prep.schemas import TableSpec

try:  # python-isal's igzip: same format, several times faster; fixed output for a fixed input
    from isal import igzip as _fast_gzip
except ImportError:  # pragma: no cover
    _fast_gzip = None

_UNQUOTED = pa_csv.WriteOptions(include_header=False, quoting_style="none", batch_size=65536)


def open_gzip(raw: IO[bytes]) -> IO[bytes]:
    """A gzip stream with mtime 0 and no file name in the header, so bytes depend only on content."""
    if _fast_gzip is not None:
        return _fast_gzip.IGzipFile(filename="", mode="wb", compresslevel=2, fileobj=raw, mtime=0)
    return gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=raw, mtime=0)


class TableWriter:
    """Write one MIMIC table as .csv.gz, header first, then any number of row chunks."""

    def __init__(self, spec: TableSpec, root: Path) -> None:
        self.spec = spec
        self.path = Path(root) / f"{spec.relpath}.csv.gz"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0
        self._raw = open(self.path, "wb")  # noqa: SIM115 - closed in close(); the writer is the context manager
        self._stream = open_gzip(self._raw)
        self._stream.write((",".join(spec.column_names) + "\n").encode())

    def write(self, table: pa.Table) -> None:
        if table.column_names != self.spec.column_names:
            raise ValueError(f"{self.spec.name}: columns {table.column_names} != {self.spec.column_names}")
        self.rows += table.num_rows
        if table.num_rows == 0:
            return
        try:
            buffer = io.BytesIO()
            pa_csv.write_csv(table, buffer, _UNQUOTED)
        except pa.ArrowInvalid:  # a value holds a comma or quote: quote minimally, like MIMIC
            buffer = io.BytesIO()
            as_text = pa.table({name: pc.cast(column, pa.string())
                                for name, column in zip(table.column_names, table.columns, strict=True)})
            as_text.to_pandas().to_csv(buffer, header=False, index=False, quoting=csv.QUOTE_MINIMAL,
                                     lineterminator="\n")
        self._stream.write(buffer.getvalue())

    def close(self) -> None:
        self._stream.close()
        self._raw.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_table(spec: TableSpec, root: Path, chunks: pa.Table | Iterable[pa.Table]) -> int:
    """Write a whole table; returns the row count."""
    with TableWriter(spec, root) as writer:
        for chunk in [chunks] if isinstance(chunks, pa.Table) else chunks:
            writer.write(chunk)
        return writer.rows
