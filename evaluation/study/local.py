"""Run a grid's cells as plain processes, without DVC experiments (`study run --backend local`).

For a machine that holds a copy of the code but no DVC repository (a lent GPU box), or for
running many cells side by side under a time budget. Every (cell, task) is one
`python -m training.train` process with the cell's composed configuration; its
predictions.parquet and history.json land where `report` reads them
(reports/study/<grid>/cells/<name>/<task>/), stamped `{"backend": "local", "commit": ...}` so
that `collect` (which mirrors DVC's experiments) leaves them alone. Resumable: a (cell, task)
whose stamp exists is skipped, and a killed training continues from its last.pt (`--resume`).
Once a (cell, task) is stamped its run folder (checkpoints, about 180 MB a training on the
study twin) is deleted, unless `keep_runs`: the report needs only the copied predictions and
history, and a grid's checkpoints filled a 250 GB disk before this rule existed.

Data: the data stages of dvc.yaml, run in its order with the grid's `base` overrides. A grid
that changes the data (the study twin) prepares its own copy under <work>/data/<name>/ so it
never overwrites the default twin; a stamp with the data settings marks it done.

Grids run in the order given; within a grid, seeds first (every method's first seed, then
every method's second, ...), so a run stopped by its deadline still covers every method.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from data_prep.io import write_bytes, write_json, write_text
from evaluation.study.collect import STAMP, cell_dir
from evaluation.study.grids import Cell, Grid
from evaluation.study.processes import run_logged

log = logging.getLogger(__name__)
DATA_LOCATIONS = ("data.synthetic.out", "data.mimic_iv_root", "data.mimic_cxr_root", "data.interim_dir",
                  "data.processed_dir")


def git_commit(repo: Path) -> str:
    """The checkout's commit; STUDY_COMMIT where the copy has no git history (a lent machine)."""
    if os.environ.get("STUDY_COMMIT"):
        return os.environ["STUDY_COMMIT"]
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def data_stage_commands(repo: Path, tasks: list[str]) -> list[list[str]]:
    """dvc.yaml's data_prep stages as argument lists, in file order, `foreach` expanded: one
    source of truth for how the data are made."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    commands = []
    for stage in stages.values():
        body = stage.get("do", stage)
        command = str(body["cmd"])
        if not command.startswith("python -m data_prep."):
            continue
        for item in tasks if "foreach" in stage else [None]:
            text = command if item is None else command.replace("${item}", item)
            commands.append([sys.executable, *text.split()[1:]])
    return commands


def data_overrides(grid: Grid, work: Path) -> list[str]:
    """The grid's data settings plus, when they change the data, locations of its own."""
    if not any(override.startswith("data.") for override in grid.base):
        return []
    digest = hashlib.sha1(" ".join(sorted(grid.base)).encode()).hexdigest()[:8]
    root = work / "data" / f"{grid.name}-{digest}"
    places = {"data.synthetic.out": root / "synthetic", "data.mimic_iv_root": root / "synthetic" / "mimic-iv",
              "data.mimic_cxr_root": root / "synthetic" / "mimic-cxr-jpg", "data.interim_dir": root / "interim",
              "data.processed_dir": root / "processed"}
    return [f"{key}={places[key]}" for key in DATA_LOCATIONS]


_COMPOSING = threading.Lock()  # Hydra's compose uses one global state: one thread at a time


def compose_params(overrides: list[str], path: Path) -> dict[str, Any]:
    """Compose configs/ with `overrides` (as `dvc exp run -S` would) and write it to `path`."""
    from data_prep.params import checked_compose, to_yaml

    with _COMPOSING:
        params = checked_compose(overrides)
    write_text(path, to_yaml(params))
    return params


def prepare_data(grid: Grid, repo: Path, work: Path, extra: list[str], data_jobs: int | None = None) -> list[str]:
    """Run the data stages for the grid (once); returns the data overrides every cell needs.
    Every task's data are prepared even when a run trains only some (`--tasks`): the image
    cache is shared by the tasks, and a later run for the others then finds its data ready."""
    overrides = [*grid.base, *data_overrides(grid, work)]
    data = [item for item in [*overrides, *extra] if item.startswith("data.")]
    params_file = work / "params" / f"{grid.name}-data.yaml"
    params = compose_params(data, params_file)
    stamp = Path(params["data"]["processed_dir"]) / "prepared.json"
    tasks = [str(task) for task in params["task"]["names"]]
    wanted = {"data": params["data"], "tasks": tasks}
    if stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(wanted)):
        return data
    workers = [] if data_jobs is None else \
        [f"data.synthetic.workers={data_jobs}", f"data.cxr.workers={data_jobs}"]
    for command in tqdm(data_stage_commands(repo, tasks), desc=f"data for {grid.name}", unit="stage"):
        full = [*command, "--params", str(params_file), *workers]
        if run_logged(full, work / "logs" / f"{grid.name}-data.log", repo) != 0:
            raise RuntimeError(f"data stage {' '.join(command[2:])} failed: see {work / 'logs'}")
    write_json(stamp, wanted)
    return data


@dataclass(frozen=True)
class CellTask:
    grid: Grid
    cell: Cell
    task: str

    @property
    def label(self) -> str:
        return f"{self.cell.name}/{self.task}"


def cell_done(study_dir: Path, job: CellTask) -> bool:
    return (cell_dir(study_dir, job.cell.name, job.task) / STAMP).is_file()


def run_cell_task(job: CellTask, repo: Path, work: Path, study_dir: Path, data: list[str],
                  extra: list[str], commit: str, keep_runs: bool = False) -> bool:
    """Train one task of one cell and copy its outputs into the study folder; True when done.
    The run folder goes once the stamp is written (a crash before that leaves last.pt to resume)."""
    runs = work / "runs" / job.grid.name / job.cell.name
    params_file = work / "params" / job.grid.name / f"{job.cell.name}.yaml"
    overrides = [*job.cell.overrides, *data, *extra, f"train.runs_dir={runs}"]
    if not params_file.is_file():
        compose_params(overrides, params_file)
    started = time.monotonic()
    command = [sys.executable, "-m", "training.train", "--task", job.task, "--params", str(params_file), "--resume"]
    if run_logged(command, work / "logs" / job.grid.name / f"{job.cell.name}-{job.task}.log", repo) != 0:
        log.warning("%s failed: see %s", job.label, work / "logs" / job.grid.name)
        return False
    target = cell_dir(study_dir, job.cell.name, job.task)
    for name in ("predictions.parquet", "history.json"):
        write_bytes(target / name, (runs / job.task / name).read_bytes())
    write_json(target / STAMP, {"backend": "local", "commit": commit, "overrides": overrides,
                                "seconds": round(time.monotonic() - started, 1)})
    if not keep_runs:
        shutil.rmtree(runs / job.task, ignore_errors=True)
        if runs.is_dir() and not any(runs.iterdir()):
            runs.rmdir()
    return True


def ordered_jobs(grids: list[Grid], tasks: list[str]) -> list[CellTask]:
    """Grids in the order given (the most important first); within a grid seeds first, so that
    a run stopped early still covers every method; then methods in grid order, tasks last."""
    keyed = [((order, grid.seeds.index(cell.seed), index), CellTask(grid, cell, task))
             for order, grid in enumerate(grids) for index, cell in enumerate(grid.cells()) for task in tasks]
    return [job for _, job in sorted(keyed, key=lambda item: item[0])]


def run_local(grids: list[Grid], repo: Path, work: Path, study_dirs: dict[str, Path], tasks: list[str], *,
              jobs: int, extra: list[str] = (), deadline: float | None = None,
              data_jobs: int | None = None, on_grid_done: Callable[[Grid], None] | None = None,
              keep_runs: bool = False) -> dict[str, int]:
    """Run every missing (cell, task) of `grids`, `jobs` processes at a time; no new one starts
    after `deadline` (a time.monotonic() value). Each grid's data are prepared in a thread of
    their own, and a grid's trainings start as soon as its data are ready, so a slow study twin
    does not hold back the default twin's cells. `on_grid_done(grid)` is called once a grid has
    nothing left to run (its report can start while other grids train). `keep_runs` keeps each
    training's checkpoints. Returns counts: done, failed, skipped, already."""
    repo, work, extra = Path(repo), Path(work), list(extra)
    commit = git_commit(repo)
    pending = [job for job in ordered_jobs(grids, tasks) if not cell_done(study_dirs[job.grid.name], job)]
    total = sum(len(grid.cells()) for grid in grids) * len(tasks)
    counts = {"done": 0, "failed": 0, "skipped": 0, "already": total - len(pending)}
    log.info("local study run: %d (cell, task) trainings to run, %d already done, %d at a time",
             len(pending), counts["already"], jobs)
    running: dict[Future, CellTask] = {}
    announced: set[str] = set()
    with ThreadPoolExecutor(max_workers=len(grids)) as preparing, ThreadPoolExecutor(max_workers=jobs) as pool, \
            tqdm(total=len(pending), desc="study cells", unit="run") as bar:
        data = {grid.name: preparing.submit(prepare_data, grid, repo, work, extra, data_jobs)
                for grid in grids if any(job.grid.name == grid.name for job in pending)}
        while pending or running:
            if deadline is not None and time.monotonic() > deadline and pending:
                counts["skipped"] += len(pending)
                log.warning("deadline reached: %d trainings not started", len(pending))
                pending = []
            for name, future in data.items():  # a grid whose data failed cannot run
                if future.done() and future.exception() is not None and any(j.grid.name == name for j in pending):
                    log.error("data for %s failed: %s", name, future.exception())
                    dropped = [job for job in pending if job.grid.name == name]
                    pending = [job for job in pending if job.grid.name != name]
                    counts["failed"] += len(dropped)
                    bar.update(len(dropped))
            while len(running) < jobs:
                job = next((job for job in pending if data[job.grid.name].done()), None)
                if job is None:
                    break
                pending.remove(job)
                running[pool.submit(run_cell_task, job, repo, work, study_dirs[job.grid.name],
                                    data[job.grid.name].result(), extra, commit, keep_runs)] = job
            if not running:
                if pending:
                    wait(list(data.values()), return_when=FIRST_COMPLETED, timeout=5)
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED, timeout=5)
            for future in finished:
                job = running.pop(future)
                ok = future.exception() is None and future.result()
                if future.exception() is not None:
                    log.error("%s: %s", job.label, future.exception())
                counts["done" if ok else "failed"] += 1
                bar.update(1)
            _announce_finished(grids, pending, running, announced, on_grid_done)
    _announce_finished(grids, pending, running, announced, on_grid_done)
    return counts


def _announce_finished(grids: list[Grid], pending: list[CellTask], running: dict[Future, CellTask],
                       announced: set[str], on_grid_done: Callable[[Grid], None] | None) -> None:
    if on_grid_done is None:
        return
    busy = {job.grid.name for job in pending} | {job.grid.name for job in running.values()}
    for grid in grids:
        if grid.name not in busy and grid.name not in announced:
            announced.add(grid.name)
            on_grid_done(grid)
