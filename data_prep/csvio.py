"""Opening MIMIC's CSV / CSV.GZ files, with a fast inflater where one is installed.

chartevents is about 3.3 GB of gzip; gzip decompression is the floor of extraction, so
we use python-isal's igzip (same format, several times faster) when it is importable.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO

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
