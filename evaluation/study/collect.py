"""Fetch each finished cell's predictions and training history from DVC into the study folder.

Experiments keep their outputs in DVC's cache, not in the workspace: for every cell of the
grid that `dvc exp show -A` lists (on the newest commit that has it, so commits made while a
grid runs do not hide its results), runs/<task>/predictions.parquet and
history.json are read at the experiment's revision (dvc.api) and copied under
reports/study/<grid>/cells/<experiment>/<task>/. Aggregation then reads only that folder,
so a report can be rebuilt, and checked, without DVC.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

from data_prep.io import write_bytes
from evaluation.experiments import Experiment, parse_exp_show, run_exp_show
from evaluation.study.grids import Grid

log = logging.getLogger(__name__)
FILES = ("predictions.parquet", "history.json")
STAMP = "revision.json"  # how a cell was made: {"rev"} from DVC, {"backend": "local", "commit"} from local.py


def read_at_revision(repo: Path, rev: str, path: str) -> bytes | None:
    try:
        import dvc.api

        with dvc.api.open(path, repo=str(repo), rev=rev, mode="rb") as handle:
            return handle.read()
    except Exception as err:  # noqa: BLE001 - a missing output is reported, not fatal
        log.warning("%s at an experiment's revision is not available (%s)", path, type(err).__name__)
        return None


def cell_dir(study_dir: Path, name: str, task: str) -> Path:
    return study_dir / "cells" / name / task


def collect(grid: Grid, repo: Path, study_dir: Path, tasks: list[str],
            experiments: list[Experiment] | None = None) -> dict[str, str]:
    """Copy every finished cell's files; returns {experiment name: revision} of the cells found."""
    experiments = experiments if experiments is not None else \
        parse_exp_show(run_exp_show(repo, all_commits=True) or [])
    wanted = {cell.name for cell in grid.cells()}
    found: dict[str, str] = {}
    for exp in experiments:  # newest commit first: a cell rerun on a later commit wins
        if exp.kind != "experiment" or exp.name not in wanted or exp.name in found:
            continue
        runs_dir = str((exp.params.get("train") or {}).get("runs_dir", "runs"))
        complete = True
        for task in tasks:
            target = cell_dir(study_dir, exp.name, task)
            stamp = target / STAMP
            if stamp.is_file() and json.loads(stamp.read_text()).get("rev") == exp.rev:
                continue
            for name in FILES:
                content = read_at_revision(repo, exp.rev, f"{runs_dir}/{task}/{name}")
                if content is None:
                    complete = False
                    break
                write_bytes(target / name, content)
            else:
                write_bytes(stamp, json.dumps({"rev": exp.rev}).encode())
        if complete:
            found[exp.name] = exp.rev
    for name in wanted - set(found):  # an earlier copy of a cell DVC no longer has finished
        if not ran_locally(study_dir, name):
            shutil.rmtree(study_dir / "cells" / name, ignore_errors=True)
    log.info("study %s: %d of %d cells collected", grid.name, len(found), len(wanted))
    return found


def cell_stamps(study_dir: Path, name: str) -> list[dict]:
    """The stamps of a cell's tasks (one per task folder)."""
    return [json.loads(stamp.read_text()) for stamp in (study_dir / "cells" / name).glob(f"*/{STAMP}")]


def ran_locally(study_dir: Path, name: str) -> bool:
    """A cell written by `study run --backend local` (evaluation/study/local.py): it has no DVC
    experiment, and collecting must not remove it."""
    stamps = cell_stamps(study_dir, name)
    return bool(stamps) and all(stamp.get("backend") == "local" for stamp in stamps)


def cell_provenance(study_dir: Path, names: list[str]) -> dict[str, list[str]]:
    """How the collected cells were run: backends (dvc, local) and commits, from their stamps."""
    backends, commits = set(), set()
    for name in names:
        for data in cell_stamps(study_dir, name):
            backends.add(str(data.get("backend", "dvc")))
            commits.add(str(data.get("commit") or str(data.get("rev", ""))[:7]))
    return {"backends": sorted(backends), "commits": sorted(commits - {""})}


def read_cell(study_dir: Path, name: str, task: str) -> tuple[bytes, list[dict]] | None:
    """(predictions.parquet bytes, history rows) of a collected cell, or None."""
    folder = cell_dir(study_dir, name, task)
    if not (folder / "predictions.parquet").is_file():
        return None
    history = json.loads((folder / "history.json").read_text()) if (folder / "history.json").is_file() else []
    return (folder / "predictions.parquet").read_bytes(), history


def parquet_frame(content: bytes):
    import pandas as pd

    return pd.read_parquet(io.BytesIO(content))
