"""Stage `synthesize`: write the seeded synthetic MIMIC-IV + MIMIC-CXR-JPG twin (docs/synthetic-data.md).

    python -m data_prep.synthesize [--params params.yaml] [data.synthetic.n_subjects=200 ...]

Reads cfg.data.synthetic and writes `<out>/{mimic-iv, mimic-cxr-jpg, truth}` atomically.
Tests build tiny fixtures with `generate_twin(out_dir, n_subjects=40, image_size=64)`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from data_prep.config import load_config, run_stage, stage_parser
from data_prep.synthetic import generate_twin
from data_prep.synthetic.settings import settings_from_config
from data_prep.synthetic.twin import write_twin

__all__ = ["generate_twin", "main"]
log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    args = parser.parse_args(argv)
    cfg = load_config(args.params, args.overrides)
    settings = settings_from_config(cfg.data.synthetic)
    write_twin(Path(cfg.data.synthetic.out), settings)


if __name__ == "__main__":
    run_stage(main)
