"""Stage build_tasks: cohorts, labels and patient-level splits of every task.

Reads <data.interim_dir>/ehr/{stays,events}.parquet and <data.mimic_iv_root>/hosp/diagnoses_icd,
writes <data.interim_dir>/tasks/<task>/{labels.parquet, cohort.json} for each of task.names.
Params: task (names, min_age, <task>.min_stay_hours, <task>.window_hours), data.split
(seed, train, val, test), data.mimic_iv_root, data.interim_dir.

  python -m data_prep.build_tasks [--params params.yaml] [--root DIR] [--ehr DIR] [--out DIR] [key=value ...]
"""

from __future__ import annotations

import logging

from data_prep import paths
from data_prep.config import load_config, run_stage, stage_parser
from data_prep.ehr.cohorts import LABELERS, TaskWindow
from data_prep.ehr.tasks import build_tasks
from data_prep.errors import PipelineInputError

log = logging.getLogger(__name__)


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--root", help="MIMIC-IV root (default: data.mimic_iv_root)")
    parser.add_argument("--ehr", help="extract_ehr output (default: <data.interim_dir>/ehr)")
    parser.add_argument("--out", help="output directory (default: <data.interim_dir>/tasks)")
    args = parser.parse_args()
    cfg = load_config(args.params, args.overrides)
    unknown = [name for name in cfg.task.names if name not in LABELERS or name not in cfg.task]
    if unknown:
        raise PipelineInputError(f"task.names: unknown task {unknown[0]!r} (expected one of "
                                 f"{', '.join(LABELERS)}, each with task.<name> settings)")
    windows = {name: TaskWindow(float(cfg.task.min_age), float(cfg.task[name].min_stay_hours),
                                cfg.task[name].window_hours) for name in cfg.task.names}
    split = cfg.data.split
    flows = build_tasks(args.root or cfg.data.mimic_iv_root, args.ehr or paths.ehr_interim_dir(cfg),
                        args.out or paths.tasks_dir(cfg), list(cfg.task.names), windows, int(split.seed),
                        {name: split[name] for name in ("train", "val", "test")})
    for task, flow in flows.items():
        log.info("%s: %d stays (%s)", task, flow["final"],
                 ", ".join(f"{k} {v}" for k, v in flow["splits"].items()))


if __name__ == "__main__":
    run_stage(main)
