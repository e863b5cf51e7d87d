"""One task end to end: read the run's files, evaluate, write metrics, plot data and reports."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from data_prep import paths
from data_prep.io import write_json, write_text
from evaluation.assess import EvalSettings, TaskEvaluation, evaluate_task
from evaluation.inputs import (
    data_version,
    read_demographics,
    read_history,
    read_json,
    read_predictions,
)
from evaluation.metrics_json import flat_metrics
from evaluation.plots import write_curve_csvs
from evaluation.render_html import render_html
from evaluation.render_md import render_markdown
from evaluation.report_content import ReportContext, build_task_document

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskInputs:
    predictions: Path
    history: Path | None = None
    labels: Path | None = None
    cohort: Path | None = None
    pair_counts: Path | None = None
    dvc_lock: Path | None = None
    privacy: Path | None = None


def task_inputs(config: dict, task: str, dvc_lock: str | Path = "dvc.lock") -> TaskInputs:
    """The contract paths of docs/architecture.md for `task`, from the configuration."""
    runs = paths.run_dir(config, task)
    return TaskInputs(predictions=runs / "predictions.parquet", history=runs / "history.json",
                      labels=paths.labels_path(config, task), cohort=paths.cohort_path(config, task),
                      pair_counts=paths.counts_path(config, task), dvc_lock=Path(dvc_lock),
                      privacy=paths.privacy_report_path(config, task))


def is_synthetic(config: dict) -> bool:
    """True when the EHR root is the generated twin (under data.synthetic.out, or named so)."""
    data = config.get("data") or {}
    root = Path(str(data.get("mimic_iv_root", "")))
    out = (data.get("synthetic") or {}).get("out")
    if out and (root == Path(out) or Path(out) in root.parents):
        return True
    return "synthetic" in root.parts


def write_task_report(task: str, inputs: TaskInputs, config: dict, out_dir: str | Path) -> TaskEvaluation:
    out_dir = Path(out_dir)
    settings = EvalSettings.from_config(config["eval"])
    predictions = read_predictions(inputs.predictions)
    evaluation = evaluate_task(task, predictions, read_demographics(inputs.labels), settings)
    context = ReportContext(
        config=config, cohort=read_json(inputs.cohort, "cohort flow"),
        pair_counts=read_json(inputs.pair_counts, "CXR pairing counts"),
        history=read_history(inputs.history),
        data_version=data_version(inputs.dvc_lock, task) if inputs.dvc_lock else {},
        synthetic=is_synthetic(config),
        privacy=read_json(inputs.privacy, "privacy audit") if inputs.privacy else None)
    document = build_task_document(evaluation, context)
    version = ", ".join(f"{Path(p).name}:{m[:8]}" for p, m in context.data_version.items()) or "unversioned"
    footer = f"Task {task} · data version: {version}"
    write_json(out_dir / "metrics.json", flat_metrics(evaluation))
    write_curve_csvs(evaluation.paired_curves, out_dir / "plots")
    write_text(out_dir / "report.md", render_markdown(document, footer))
    write_text(out_dir / "report.html", render_html(document, footer))
    log.info("%s: wrote metrics.json, plots/, report.md, report.html under %s", task, out_dir)
    return evaluation
