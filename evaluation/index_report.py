"""Build reports/index.html: links to every task's report and the comparison of experiments."""

from __future__ import annotations

import logging
from pathlib import Path

from data_prep.io import write_text
from evaluation.assess import EvalSettings
from evaluation.compare import paired_run_differences
from evaluation.distill_report import distillation_section
from evaluation.experiments import (
    Experiment,
    experiment_predictions,
    parse_exp_show,
    run_exp_show,
    workspace_only,
)
from evaluation.index_content import build_index_document
from evaluation.inputs import predictions_from_frame, read_json, read_predictions
from evaluation.privacy_report import tradeoff_section
from evaluation.render_html import render_html
from evaluation.task_report import is_synthetic

log = logging.getLogger(__name__)


def _with_fresh_workspace(experiments: list[Experiment], config: dict,
                          metrics: dict[str, dict]) -> list[Experiment]:
    """The workspace row always shows the files just written, whatever DVC listed."""
    rest = [e for e in experiments if e.kind != "workspace"]
    return workspace_only(config, metrics) + rest


def paired_differences(experiments: list[Experiment], tasks: list[str], config: dict,
                       settings: EvalSettings, repo: Path) -> dict:
    differences = {}
    runs = Path(config["train"]["runs_dir"])
    for task in tasks:
        path = runs / task / "predictions.parquet"
        if not path.is_file():
            continue
        reference = read_predictions(path)
        for exp in experiments:
            if exp.kind == "workspace" or task not in exp.metrics:
                continue
            frame = experiment_predictions(exp.rev, path.as_posix(), repo)
            if frame is None:
                continue
            try:
                other = predictions_from_frame(frame, f"{exp.name}:{path}")
            except Exception:  # noqa: BLE001 - an old contract version is "not comparable"
                continue
            result = paired_run_differences(other, reference, settings)
            if result:
                differences[(exp.name, task)] = result
    return differences


def study_sections_found(study_root: Path) -> list:
    """The sections of every study reported under reports/study/<grid>/summary.json
    (`python -m evaluation.study report <grid>`), so the comparison report shows the same
    seed-aggregated numbers as docs/results.md."""
    from evaluation.study.grids import GRIDS
    from evaluation.study.render import report_paths, study_sections

    sections = []
    for grid in GRIDS.values():  # the registry's order: the grids in the order the docs tell them
        path = report_paths(study_root / grid.name, "test")[0]
        summary = read_json(path, "study summary") if path.is_file() else None
        if isinstance(summary, dict):
            sections += study_sections(grid, summary)
    return sections


def write_index(config: dict, out_path: str | Path, repo: str | Path = ".",
                exp_show: list | None | bool = True, with_differences: bool = True) -> Path:
    """exp_show: True runs `dvc exp show --json`; a list uses it; None/False means none."""
    reports = Path(config["eval"]["reports_dir"])
    tasks = [str(t) for t in config["task"]["names"]]
    metrics = {}
    for task in tasks:
        loaded = read_json(reports / task / "metrics.json", f"{task} metrics")
        if isinstance(loaded, dict):
            metrics[task] = loaded
    shown = run_exp_show(repo) if exp_show is True else (exp_show or None)
    experiments = _with_fresh_workspace(parse_exp_show(shown) if shown else [], config, metrics)
    settings = EvalSettings.from_config(config["eval"])
    differences = paired_differences(experiments, tasks, config, settings, Path(repo)) \
        if with_differences and len(experiments) > 1 else {}
    available = [t for t in tasks if (reports / t / "report.html").is_file()]
    document = build_index_document(tasks, available, experiments, differences,
                                    is_synthetic(config), exp_show_worked=bool(shown))
    document.sections += study_sections_found(reports / "study")
    distillation = distillation_section(reports / "distillation" / "rows.json")  # bench/distill_compare.py
    tradeoff = tradeoff_section(reports / "privacy_tradeoff")  # python -m evaluation.privacy_tradeoff aggregate
    document.sections += [section for section in (distillation, tradeoff) if section is not None]
    out_path = Path(out_path)
    write_text(out_path, render_html(document, footer="Built by `python -m evaluation.report`."))
    log.info("wrote %s (%d runs)", out_path, len(experiments))
    return out_path

