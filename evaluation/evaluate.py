"""Stage evaluate@<task>: metrics with patient-level bootstrap CIs and the task's reports.

    python -m evaluation.evaluate --task in_hospital_mortality [key=value ...]

Reads runs/<task>/{predictions.parquet, history.json} (train.runs_dir),
<data.interim_dir>/tasks/<task>/{labels.parquet, cohort.json},
<data.interim_dir>/cxr/pairs_<task>_counts.json and dvc.lock (data version, optional);
writes <eval.reports_dir>/<task>/{metrics.json, report.md, report.html, plots/roc_<head>.csv,
plots/pr_<head>.csv}. Settings: eval.* (n_bootstrap, seed, ci_level, min_cell_size,
calibration_bins, age_bands, reports_dir). The explicit path options override the defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import OmegaConf

from data_prep import paths
from data_prep.config import run_stage, task_stage_config, task_stage_parser
from evaluation.task_report import task_inputs, write_task_report


def main() -> None:
    parser = task_stage_parser(__doc__.strip().splitlines()[0])
    for name in ("predictions", "history", "labels", "cohort", "pair-counts"):
        parser.add_argument(f"--{name}", type=Path, help=f"{name} file (default: the contract path)")
    parser.add_argument("--dvc-lock", type=Path, default=Path("dvc.lock"),
                        help="dvc.lock to read the data version from (default: dvc.lock)")
    parser.add_argument("--out-dir", type=Path, help="output folder (default: <eval.reports_dir>/<task>)")
    args = parser.parse_args()
    cfg = task_stage_config(args)
    config = OmegaConf.to_container(cfg, resolve=True)
    inputs = task_inputs(config, args.task, args.dvc_lock)
    explicit = {field: getattr(args, field) for field in ("predictions", "history", "labels", "cohort")}
    explicit["pair_counts"] = args.pair_counts
    inputs = dataclasses.replace(inputs, **{k: v for k, v in explicit.items() if v is not None})
    out_dir = args.out_dir or paths.report_dir(config, args.task)
    write_task_report(args.task, inputs, config, out_dir)


if __name__ == "__main__":
    run_stage(main)
