"""Run a study's child process with its output appended to a log file.

Both backends need this (the DVC queue's commands, and the local backend's data stages and
trainings): a study runs for hours, so its children's output goes to files a researcher can
read afterwards, and the caller needs only the exit status.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_logged(command: list[str], log_file: Path, cwd: Path) -> int:
    """Run `command` in `cwd`, appending `$ command` and its output to `log_file`; the exit status."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        return subprocess.run(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT).returncode
