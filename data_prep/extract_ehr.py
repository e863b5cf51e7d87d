"""Stage extract_ehr: raw MIMIC-IV chartevents + labevents -> events and stays tables.

Reads data.mimic_iv_root (icu/icustays, icu/chartevents, hosp/labevents, hosp/admissions,
hosp/patients; .csv or .csv.gz) and writes <data.interim_dir>/ehr/{events.parquet,
stays.parquet, extract_summary.json}. Params: data.mimic_iv_root, data.interim_dir,
data.ehr.{variable_map, block_size_mb, inflater, sort_buckets}.

  python -m data_prep.extract_ehr [--params params.yaml] [--root DIR] [--out DIR] [key=value ...]
"""

from __future__ import annotations

import logging

from data_prep import paths
from data_prep.config import load_config, run_stage, stage_parser
from data_prep.ehr.extract import extract_ehr
from data_prep.ehr.variables import load_variable_map

log = logging.getLogger(__name__)


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--root", help="MIMIC-IV root (default: data.mimic_iv_root)")
    parser.add_argument("--out", help="output directory (default: <data.interim_dir>/ehr)")
    args = parser.parse_args()
    cfg = load_config(args.params, args.overrides)
    ehr = cfg.data.ehr
    summary = extract_ehr(args.root or cfg.data.mimic_iv_root,
                          args.out or paths.ehr_interim_dir(cfg),
                          load_variable_map(ehr.variable_map),
                          block_size_mb=ehr.block_size_mb, inflater=ehr.get("inflater", "isal_threaded"),
                          sort_buckets=ehr.get("sort_buckets", 4))
    log.info("extracted %d events of %d stays from %s", summary["events"], summary["stays"],
             ", ".join(f"{n} {t} rows" for t, n in summary["rows_scanned"].items()))


if __name__ == "__main__":
    run_stage(main)
