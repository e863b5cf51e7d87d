"""Opening MIMIC's CSV / CSV.GZ files, with a fast inflater where one is installed, and
turning what goes wrong while reading them into one line naming the file.

chartevents is about 3.3 GB of gzip; gzip decompression is the floor of extraction, so
we use python-isal's igzip (same format, several times faster) when it is importable.

Errors never quote a raw row: MIMIC rows carry subject, admission and stay identifiers,
and an error line ends up in logs and issue reports. They name the file, the line and the
column instead (`first_bad_line` finds the line on the error path only, so the fast typed
reader stays fast). The value itself is quoted only for columns that are not identifiers.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import re
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

from data_prep.errors import PipelineInputError

IDENTIFIER_COLUMNS = frozenset({"subject_id", "hadm_id", "stay_id", "study_id", "dicom_id", "labevent_id",
                                "specimen_id", "caregiver_id", "order_provider_id", "admit_provider_id"})

try:  # pragma: no cover - which branch runs depends on the environment
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover
    _gzip = gzip


def open_binary(path: str | Path) -> IO[bytes]:
    """A decompressed binary stream of a .csv.gz or .csv file."""
    path = Path(path)
    if path.suffix == ".gz":
        return _gzip.open(path, "rb")
    return open(path, "rb")


def open_text(path: str | Path) -> IO[str]:
    return io.TextIOWrapper(open_binary(path), encoding="utf-8", newline="")


@contextlib.contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn a truncated or corrupt compressed file into one line naming it (not an EOFError traceback).

    gzip, isal and pyarrow each fail differently (EOFError, zlib.error, BadGzipFile, OSError
    "Truncated compressed stream"); a missing file is reported elsewhere and passes through.
    """
    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PipelineInputError(f"{path}: truncated or corrupt file ({reason}); download it again") from None


_INTEGER = re.compile(r"[+-]?\d+")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_timestamp(formats: tuple[str, ...]) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        for fmt in formats:
            try:
                datetime.strptime(text, fmt)  # rejects impossible dates (February 30)
            except ValueError:
                continue
            return True
        return False
    return check


def value_check(kind: str, formats: tuple[str, ...] = ()) -> Callable[[str], bool]:
    """Whether a raw CSV field fits `kind` ('integer', 'number', 'timestamp'); empty fields are null."""
    test = {"integer": lambda text: bool(_INTEGER.fullmatch(text)), "number": _is_float,
            "timestamp": _is_timestamp(formats)}[kind]
    return lambda text: text == "" or test(text)


def first_bad_line(path: str | Path, column: str | None = None,
                   check: Callable[[str], bool] | None = None) -> tuple[int, str | None] | None:
    """(line number, bad value) of the first row with the wrong number of fields, or whose
    `column` fails `check`; None if every row is fine. Only called once a read has failed."""
    with reading(path), open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        index = header.index(column) if column in header else None
        for row in reader:
            if len(row) != len(header):
                return reader.line_num, None
            if index is not None and check is not None and not check(row[index]):
                return reader.line_num, row[index]
    return None


def quoted(column: str, value: str | None) -> str:
    """A bad value as it may appear in a message: never an identifier's."""
    if value is None or column in IDENTIFIER_COLUMNS:
        return "the value"
    return f"value {value!r}"
