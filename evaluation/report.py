"""Stage report: reports/index.html linking all task reports and comparing experiments.

    python -m evaluation.report [--no-exp-show] [--no-paired-differences] [key=value ...]

Reads <eval.reports_dir>/<task>/metrics.json for every task in task.names, the experiments
DVC knows (`dvc exp show --json`: their params and recorded metrics; if it fails, only the
workspace is shown) and, for paired differences against the workspace, runs/<task>/
predictions.parquet of the workspace and of each experiment (from the DVC cache, where
available). Writes <eval.reports_dir>/index.html.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from data_prep.config import load_config, run_stage, stage_parser
from evaluation.index_report import write_index


def main() -> None:
    parser = stage_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--out", type=Path, help="output file (default: <eval.reports_dir>/index.html)")
    parser.add_argument("--repo", type=Path, default=Path("."), help="DVC repository (default: .)")
    parser.add_argument("--no-exp-show", action="store_true", help="do not ask DVC for experiments")
    parser.add_argument("--no-paired-differences", action="store_true",
                        help="skip the paired differences against the workspace")
    args = parser.parse_args()
    config = OmegaConf.to_container(load_config(args.params, args.overrides), resolve=True)
    out = args.out or Path(config["eval"]["reports_dir"]) / "index.html"
    write_index(config, out, repo=args.repo, exp_show=not args.no_exp_show,
                with_differences=not args.no_paired_differences)


if __name__ == "__main__":
    run_stage(main)
