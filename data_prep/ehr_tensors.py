"""Stage ehr_tensors: one task's hourly 76-feature tensors (float16, ragged with offsets).

Reads <data.interim_dir>/ehr/events.parquet and <data.interim_dir>/tasks/<task>/labels.parquet,
writes <data.processed_dir>/ehr/<task>/{values.npy, index.parquet, features.json,
normalization.json}. Params: data.ehr.{variable_map, bin_hours, tensor_chunk_stays,
tensor_chunk_events},
data.interim_dir, data.processed_dir.

  python -m data_prep.ehr_tensors --task in_hospital_mortality [--params params.yaml] [key=value ...]
"""

from __future__ import annotations

import logging
from pathlib import Path

from data_prep import paths
from data_prep.config import run_stage, task_stage_config, task_stage_parser
from data_prep.ehr.tensors import build_tensors
from data_prep.ehr.variables import load_variable_map

log = logging.getLogger(__name__)


def main() -> None:
    parser = task_stage_parser(__doc__)
    parser.add_argument("--ehr", help="extract_ehr output (default: <data.interim_dir>/ehr)")
    parser.add_argument("--tasks", help="build_tasks output (default: <data.interim_dir>/tasks)")
    parser.add_argument("--out", help="output directory (default: <data.processed_dir>/ehr/<task>)")
    args = parser.parse_args()
    cfg = task_stage_config(args)
    ehr = cfg.data.ehr
    summary = build_tensors(Path(args.ehr or paths.ehr_interim_dir(cfg)) / "events.parquet",
                            Path(args.tasks or paths.tasks_dir(cfg)) / args.task / "labels.parquet",
                            args.out or paths.ehr_dir(cfg, args.task),
                            load_variable_map(ehr.variable_map), float(ehr.bin_hours),
                            int(ehr.get("tensor_chunk_stays", 4000)),
                            int(ehr.get("tensor_chunk_events", 1_000_000)))
    log.info("%s: %d stays, %d hourly rows x %d features", args.task, summary["stays"], summary["rows"],
             summary["features"])


if __name__ == "__main__":
    run_stage(main)
