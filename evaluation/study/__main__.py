"""The study command: run a named grid through DVC's queue, show its status, report it.

    python -m evaluation.study run GRID [--jobs N]     # resumable: run it again to continue
    python -m evaluation.study run GRID --backend local --jobs 12 [--set train.device=cuda]
    python -m evaluation.study status GRID
    python -m evaluation.study report GRID [--docs docs/results.md] [--split val] [--tasks TASK ...]
    python -m evaluation.study choose GRID             # after `report GRID --split val`
    python -m evaluation.study list

`run` queues every cell of the grid that has no experiment yet on this commit and runs the
queue with N parallel jobs (each on one CPU thread). `--backend local` runs the same cells as
plain processes, without DVC experiments (a machine with a copy of the code and no DVC
repository, such as a lent GPU box; evaluation/study/local.py). `report` fetches the finished cells from
DVC, aggregates them across seeds and writes reports/study/<grid>/{summary.json, results.md,
index.html}; with --docs it also replaces the grid's block in that Markdown file. `choose`
applies the rule fixed in evaluation/study/choose.py to the validation summary and says whether
the current default settings stay.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path

from omegaconf import OmegaConf

from data_prep.config import load_config, run_stage
from data_prep.errors import PipelineInputError
from data_prep.io import write_json
from evaluation.assess import EvalSettings
from evaluation.study.grids import GRIDS, get_grid

log = logging.getLogger(__name__)


def study_dir(config: dict, grid: str) -> Path:
    return Path(config["eval"]["reports_dir"]) / "study" / grid


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation.study", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "status", "report", "choose", "list"),
                        help="choose: apply the fixed rule for defaults to `report GRID --split val`'s summary")
    parser.add_argument("grid", nargs="?", default="quick", help=f"one of {', '.join(GRIDS)}")
    parser.add_argument("--jobs", type=int, help="parallel experiments (default: the grid's)")
    parser.add_argument("--repo", type=Path, default=Path("."), help="DVC repository (default: .)")
    parser.add_argument("--params", default="params.yaml", help="settings file (eval, task names)")
    parser.add_argument("--docs", type=Path, help="Markdown file whose study block `report` replaces")
    parser.add_argument("--split", default="test", choices=("test", "val"),
                        help="`report` on the test split (default) or on validation (for choosing settings)")
    parser.add_argument("--no-collect", action="store_true", help="`report` from the cells already collected")
    parser.add_argument("--report-jobs", type=int, default=min(8, os.cpu_count() or 1),
                        help="`report`: processes that score the cells (default: the cores, at most 8)")
    parser.add_argument("--no-index", action="store_true",
                        help="`report`: do not rewrite reports/index.html (a machine without DVC)")
    parser.add_argument("--from-summary", action="store_true",
                        help="`report`: render the saved summary.json again (no cells needed), e.g. into --docs")
    parser.add_argument("--backend", default="dvc", choices=("dvc", "local"),
                        help="`run` through DVC's experiment queue (default) or as plain processes")
    parser.add_argument("--work", type=Path, default=Path("runs/study-local"),
                        help="--backend local: where its data copies, runs and logs go")
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                        help="--backend local: an override for every cell, e.g. train.device=cuda")
    parser.add_argument("--tasks", nargs="+", metavar="TASK",
                        help="run or report these tasks only (default: every task in the settings); "
                             "a later run without it adds the others")
    parser.add_argument("--keep-runs", action="store_true",
                        help="--backend local: keep each training's run folder (checkpoints) once its "
                             "outputs are copied (default: delete it)")
    parser.add_argument("--deadline-minutes", type=float,
                        help="--backend local: start no training after this many minutes")
    return parser


def selected_tasks(config: dict, wanted: list[str] | None) -> list[str]:
    """The settings' tasks, or the subset asked for (in the settings' order): a grid too big for
    one sitting can be run and reported a task at a time."""
    names = [str(task) for task in config["task"]["names"]]
    unknown = sorted(set(wanted or ()) - set(names))
    if unknown:
        raise PipelineInputError(f"--tasks {' '.join(unknown)}: expected tasks from task.names ({', '.join(names)})")
    return [name for name in names if wanted is None or name in wanted]


def main() -> None:
    args = get_args_parser().parse_args()
    if args.command == "list":
        for grid in GRIDS.values():
            print(f"{grid.name}: {len(grid.cells())} experiments. {grid.description} Budget: {grid.budget}.")
        return
    grid = get_grid(args.grid)
    config = OmegaConf.to_container(load_config(args.repo / args.params), resolve=True)
    folder = study_dir(config, grid.name)
    if args.command == "run" and args.backend == "local":
        import time

        from evaluation.study.local import run_local

        deadline = None if args.deadline_minutes is None else time.monotonic() + 60 * args.deadline_minutes
        tasks = selected_tasks(config, args.tasks)
        counts = run_local([grid], args.repo, args.work, {grid.name: folder}, tasks, jobs=args.jobs or grid.jobs,
                           extra=args.extra, deadline=deadline, keep_runs=args.keep_runs)
        print(f"study {grid.name} (local): {counts}")
        if counts["failed"] or counts["skipped"]:
            raise SystemExit(f"study {grid.name}: {counts['failed']} failed, {counts['skipped']} not started; "
                             f"logs in {args.work / 'logs'}; run the command again to continue")
    elif args.command == "run":
        from evaluation.study.runner import run_grid

        status = run_grid(grid, args.repo, jobs=args.jobs, log_dir=folder)
        print(f"study {grid.name}: {status.line()}")
        if status.failed or status.missing:
            raise SystemExit(f"study {grid.name}: {len(status.failed) + len(status.missing)} experiments did "
                             f"not finish; see {folder / 'queue.log'} and run the command again")
    elif args.command == "choose":
        from evaluation.study.choose import CHOOSERS
        from evaluation.study.render import report_paths

        if grid.choose is None:
            raise PipelineInputError(f"study grid {grid.name!r} has no choice rule (grids with one: "
                                     f"{', '.join(g.name for g in GRIDS.values() if g.choose)})")
        summary_file = report_paths(folder, "val")[0]
        if not summary_file.is_file():
            raise PipelineInputError(f"{summary_file}: not found (run `report {grid.name} --split val` first)")
        choice = CHOOSERS.create(grid.choose, grid, json.loads(summary_file.read_text()), config)
        write_json(folder / "choice.json", {"rule": grid.choose, **dataclasses.asdict(choice)})
        print(f"{'change to' if choice.changed else 'keep'} {choice.method}: {choice.reason}")
    elif args.command == "status":
        from evaluation.study.runner import grid_status

        print(f"study {grid.name}: {grid_status(grid, args.repo).line()}")
    else:
        from evaluation.study.aggregate import aggregate
        from evaluation.study.collect import collect
        from evaluation.study.render import report_paths, write_study_report

        tasks = selected_tasks(config, args.tasks)
        if args.from_summary:
            summary_file = report_paths(folder, args.split)[0]
            if not summary_file.is_file():
                raise PipelineInputError(f"{summary_file}: not found (run `report {grid.name}` once with its cells)")
            summary = json.loads(summary_file.read_text())
        else:
            if not args.no_collect:
                collect(grid, args.repo, folder, tasks)
            summary = aggregate(grid, folder, tasks, EvalSettings.from_config(config["eval"]), args.split,
                                jobs=args.report_jobs)
            summary["tasks_left_out"] = [task for task in selected_tasks(config, None) if task not in tasks]
        for path in write_study_report(grid, summary, folder, docs=args.docs):
            print(f"wrote {path}")
        if args.split == "test" and not args.no_index:  # the comparison report shows every study's test-set tables
            from evaluation.index_report import write_index

            index = Path(config["eval"]["reports_dir"]) / "index.html"
            print(f"wrote {write_index(config, index, repo=args.repo)}")


if __name__ == "__main__":
    run_stage(main)
