"""Stage pair_cxr: choose each stay's chest X-ray inside the task's time window.

    python -m data_prep.pair_cxr --task in_hospital_mortality [key=value ...]

Reads data.mimic_cxr_root/mimic-cxr-2.0.0-metadata(.csv|.csv.gz) and
<interim_dir>/tasks/<task>/labels.parquet; writes <interim_dir>/cxr/pairs_<task>.parquet and
pairs_<task>_counts.json. The rule is in data_prep/cxr/pairing.py.
"""

from __future__ import annotations

from data_prep import paths
from data_prep.config import run_stage, task_stage_config, task_stage_parser
from data_prep.cxr.pair_task import pair_task


def main() -> None:
    args = task_stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = task_stage_config(args)
    pair_task(paths.labels_path(cfg, args.task), cfg.data.mimic_cxr_root, list(cfg.data.cxr.views),
              paths.pairs_path(cfg, args.task), paths.counts_path(cfg, args.task), task=args.task)


if __name__ == "__main__":
    run_stage(main)
