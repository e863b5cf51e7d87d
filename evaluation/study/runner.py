"""Run a grid through DVC's experiment queue: queue what is missing, run it, wait.

Resumable by construction. A cell is done when an experiment of its name exists on the
current commit (`dvc exp list`); cells already queued or running (`dvc queue status`) are not
queued twice; everything else is queued with `dvc exp run --queue -n <name> -S ...` and the
queue is run with `dvc exp run --run-all -j <jobs>`, which blocks until it is empty. A grid
stopped half-way (Ctrl-C, a killed session) therefore continues where it stopped when the
same command runs again; a finished cell whose stages DVC has seen before (same code, data
and params) is restored from DVC's run cache instead of retrained. A new commit starts a new
set of experiments (they are tied to their baseline commit): the run cache still restores
every stage whose code and inputs did not change.

The first cell runs alone when the grid changes the data (a study-sized twin), so the
parallel jobs after it find the data in the run cache rather than all building it at once.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from evaluation.study.grids import Cell, Grid
from evaluation.study.processes import run_logged

log = logging.getLogger(__name__)
ACTIVE = ("Queued", "Running")


def dvc(args: list[str], repo: Path) -> subprocess.CompletedProcess:
    """Run `python -m dvc ...` in `repo` with its output captured (for commands we read)."""
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True)


def dvc_logged(args: list[str], repo: Path, log_file: Path) -> int:
    """Run `python -m dvc ...` in `repo` with its output appended to `log_file`; the exit status."""
    return run_logged([sys.executable, "-m", "dvc", *args], log_file, repo)


def finished_names(repo: Path) -> set[str]:
    """Experiments that exist on the current commit."""
    done = dvc(["exp", "list", "--name-only"], repo)
    return {line.strip() for line in done.stdout.splitlines() if line.strip()} if done.returncode == 0 else set()


def queue_states(repo: Path) -> dict[str, str]:
    """{experiment name: Queued | Running | Success | Failed} from `dvc queue status`."""
    done = dvc(["queue", "status"], repo)
    states: dict[str, str] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[-1] in (*ACTIVE, "Success", "Failed"):
            states[parts[1]] = parts[-1]
    return states


@dataclass
class GridStatus:
    done: list[Cell]
    active: list[Cell]
    failed: list[Cell]
    missing: list[Cell]

    def line(self) -> str:
        return (f"{len(self.done)} done, {len(self.active)} queued or running, {len(self.failed)} failed "
                f"before, {len(self.missing)} to queue")


def grid_status(grid: Grid, repo: Path) -> GridStatus:
    finished, states = finished_names(repo), queue_states(repo)
    status = GridStatus([], [], [], [])
    for cell in grid.cells():
        if cell.name in finished:
            status.done.append(cell)
        elif states.get(cell.name) in ACTIVE:
            status.active.append(cell)
        else:
            (status.failed if states.get(cell.name) == "Failed" else status.missing).append(cell)
    return status


def queue_cell(cell: Cell, repo: Path, log_file: Path) -> None:
    args = ["exp", "run", "--queue", "-n", cell.name]
    for override in cell.overrides:
        args += ["-S", override]
    status = dvc_logged(args, repo, log_file)
    if status != 0:
        raise RuntimeError(f"queueing {cell.name} failed (exit {status}): see {log_file}")


def _watch(grid: Grid, repo: Path, total: int, stop: threading.Event, interval: float) -> None:
    names = {cell.name for cell in grid.cells()}
    with tqdm(total=total, desc=f"study {grid.name}", unit="exp") as bar:
        while not stop.wait(interval):
            bar.n = len(names & finished_names(repo))
            bar.refresh()
        bar.n = len(names & finished_names(repo))
        bar.refresh()


def run_queue(grid: Grid, repo: Path, jobs: int, log_file: Path, expected: int, interval: float) -> int:
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(grid, repo, expected, stop, interval), daemon=True)
    watcher.start()
    try:
        return dvc_logged(["exp", "run", "--run-all", "-j", str(jobs)], repo, log_file)
    finally:
        stop.set()
        watcher.join(timeout=interval + 60)


def run_grid(grid: Grid, repo: Path, *, jobs: int | None = None, log_dir: Path, interval: float = 15.0,
             warm_up: bool = True) -> GridStatus:
    """Queue and run every cell of `grid` that is not done; returns the status afterwards."""
    repo = Path(repo)
    log_file = log_dir / "queue.log"
    status = grid_status(grid, repo)
    log.info("study %s: %s; log: %s", grid.name, status.line(), log_file)
    to_queue = status.failed + status.missing
    if not to_queue and not status.active:
        return status
    if status.failed:  # their old queue entries would shadow the new ones in `dvc queue status`
        log.warning("study %s: %d cells failed before and are queued again: %s", grid.name,
                    len(status.failed), ", ".join(cell.name for cell in status.failed))
        dvc_logged(["queue", "remove", "--failed"], repo, log_file)
    jobs = jobs or grid.jobs
    total = len(grid.cells())
    changes_data = any(override.startswith("data.") for override in grid.base)
    if warm_up and changes_data and not status.done and to_queue and not status.active:
        first, to_queue = to_queue[0], to_queue[1:]
        queue_cell(first, repo, log_file)
        log.info("study %s: running %s alone first (data stages, then the run cache)", grid.name, first.name)
        run_queue(grid, repo, 1, log_file, total, interval)
    started = time.monotonic()
    for cell in tqdm(to_queue, desc="queueing", unit="exp", leave=False):
        queue_cell(cell, repo, log_file)
    run_queue(grid, repo, jobs, log_file, total, interval)
    status = grid_status(grid, repo)
    log.info("study %s: %s after %.0f s", grid.name, status.line(), time.monotonic() - started)
    return status
