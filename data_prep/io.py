"""Atomic writes: every stage output appears complete or not at all.

A killed stage must never leave a half-written parquet, JSON or array that a later stage
(or DVC's cache) would take as valid, so each writer goes to a temporary sibling and
renames it into place, which is atomic on POSIX within one file system.

A writer killed with SIGKILL cannot clean up, so its temporary stays behind (a half-written
checkpoint can be hundreds of MB). Temporaries therefore carry a recognizable name,
`.atomic-<pid>-<final name>.<random>`, and the next write of the same output removes the
ones whose writing process is gone; `remove_stale_temporaries(directory)` does the same for
every output in a folder, for a stage to call when it starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TEMP_PREFIX = ".atomic-"
# .atomic-<pid>-<final name>.<random> (ours); .<final name>.<random>.tmp (before the prefix existed)
_TEMP_NAME = re.compile(r"^\.atomic-(?P<pid>\d+)-(?P<final>.+)\.[^.]+$")
_LEGACY_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def _process_alive(pid: int) -> bool:
    """Whether `pid` runs on this machine (signal 0 checks without signalling)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, not ours to judge
    return True


def stale_temporaries(directory: str | os.PathLike[str], final_name: str | None = None) -> list[Path]:
    """Temporaries in `directory` (of `final_name` only, if given) whose writer is no longer running.

    A temporary of a live process (another stage writing beside this one) is never stale.
    Legacy temporaries (named before the owner's pid was recorded) are stale by definition,
    since no running writer uses that name any more.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = []
    for entry in directory.iterdir():
        match = _TEMP_NAME.match(entry.name)
        if match and _process_alive(int(match.group("pid"))):
            continue
        match = match or _LEGACY_TEMP_NAME.match(entry.name)
        if match and (final_name is None or match.group("final") == final_name):
            stale.append(entry)
    return sorted(stale)


def remove_stale_temporaries(directory: str | os.PathLike[str], final_name: str | None = None) -> int:
    """Delete what `stale_temporaries` finds; return how many. Stages call it on their output folders."""
    removed = 0
    for entry in stale_temporaries(directory, final_name):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
        log.info("removed a temporary left by an interrupted write: %s", entry.name)
    return removed


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds.

    Works for files and for directories (a directory replaces the old one whole). Stale
    temporaries of the same output (a killed earlier write) are removed first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent, final.name)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{final.name}.", dir=final.parent))
    target = tmp / final.name
    try:
        yield target
        if not target.exists():
            raise FileNotFoundError(f"{target}: the writer produced nothing")
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically, sorted and indented so diffs and DVC metrics stay readable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike[str], content: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def write_parquet(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame or a pyarrow Table to parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _json_default(value: Any) -> Any:
    """Numpy scalars and paths appear in summaries; JSON has no type for them."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
