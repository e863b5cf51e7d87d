"""The experiments DVC knows, from `dvc exp show --json`: params and recorded metrics.

DVC keeps experiment outputs in its cache, not in the workspace, so the comparison relies on
what DVC recorded for each experiment: params.yaml and every reports/<task>/metrics.json.
Predictions of an experiment are fetched from the DVC cache (dvc.api) only for the paired
differences, and their absence is not an error.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)
WORKSPACE = "workspace"


@dataclass
class Experiment:
    name: str                    # "workspace", a branch/commit name, or the experiment name
    rev: str                     # git sha, or "workspace"
    kind: str                    # workspace | commit | experiment
    params: dict = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=dict)  # task -> flat metrics.json


def run_exp_show(repo: str | Path = ".", all_commits: bool = False) -> list | None:
    """`dvc exp show --json` parsed, or None if DVC is unavailable or fails (no git, no DVC).
    `all_commits` adds the experiments of every commit, newest commit first (`-A`)."""
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["-A"] if all_commits else [])]
    try:
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("dvc exp show failed (%s); showing the workspace only", err)
        return None
    if done.returncode != 0:
        log.warning("dvc exp show failed (exit %d); showing the workspace only", done.returncode)
        return None
    try:
        return json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        log.warning("dvc exp show printed no JSON; showing the workspace only")
        return None


def _task_of(metrics_path: str) -> str | None:
    path = Path(metrics_path)
    return path.parent.name if path.name == "metrics.json" else None


def _experiment(entry: dict, name: str, kind: str) -> Experiment | None:
    data = entry.get("data") or {}
    if not data:
        return None
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = {}
    for path, content in (data.get("metrics") or {}).items():
        task = _task_of(path)
        if task and isinstance(content, dict) and isinstance(content.get("data"), dict):
            metrics[task] = content["data"]
    return Experiment(name=name, rev=str(entry.get("rev", "")), kind=kind, params=params, metrics=metrics)


UNFINISHED = ("queued", "running", "failed")


def parse_exp_show(shown: list) -> list[Experiment]:
    """Flatten the JSON into rows: the workspace, each baseline commit, and its finished experiments.

    A running experiment shows up with rev "workspace"; it is the workspace row, not a second one.
    Queued, running and failed experiments are left out: until an experiment has run, DVC shows
    it with its baseline's outputs and metrics, which would read as the experiment's own.
    """
    rows: list[Experiment] = []
    for commit in shown or []:
        rev = str(commit.get("rev", ""))
        kind = "workspace" if rev == WORKSPACE else "commit"
        row = _experiment(commit, WORKSPACE if kind == "workspace" else (commit.get("name") or rev[:7]), kind)
        if row:
            rows.append(row)
        for group in commit.get("experiments") or []:
            if str((group.get("executor") or {}).get("state", "")).lower() in UNFINISHED:
                continue
            for exp in group.get("revs") or []:
                if exp.get("rev") == WORKSPACE:
                    continue
                row = _experiment(exp, exp.get("name") or group.get("name") or str(exp.get("rev", ""))[:7],
                                  "experiment")
                if row:
                    rows.append(row)
    return rows


def workspace_only(params: dict, metrics: dict[str, dict]) -> list[Experiment]:
    return [Experiment(WORKSPACE, WORKSPACE, "workspace", params, metrics)]


def experiment_predictions(rev: str, path: str, repo: str | Path = ".") -> pd.DataFrame | None:
    """An experiment's predictions.parquet from the DVC cache, or None where DVC cannot give it."""
    try:
        import dvc.api

        with dvc.api.open(path, repo=str(repo), rev=rev, mode="rb") as handle:
            return pd.read_parquet(io.BytesIO(handle.read()))
    except Exception as err:  # noqa: BLE001 - any failure just means "not available"
        log.info("predictions of an experiment not available from the DVC cache (%s)", type(err).__name__)
        return None
