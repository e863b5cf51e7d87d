"""Stage cache_cxr: decode every paired chest X-ray once into one memory-mappable uint8 array.

    python -m data_prep.cache_cxr [key=value ...]

Reads <interim_dir>/cxr/pairs_<task>.parquet for every task in task.names and the JPEGs under
data.mimic_cxr_root; writes <processed_dir>/cxr/{images.npy, index.parquet, exclusions.csv,
summary.json}. Decoding is in data_prep/cxr/decode.py, the parallel build in data_prep/cxr/cache.py.
"""

from __future__ import annotations

import logging

from data_prep import paths
from data_prep.config import load_config, run_stage, stage_parser
from data_prep.cxr.cache import build_cache, needed_images

log = logging.getLogger(__name__)


def main() -> None:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = load_config(args.params, args.overrides)
    images = needed_images(paths.pairs_path(cfg, task) for task in cfg.task.names)
    summary = build_cache(images, cfg.data.mimic_cxr_root, paths.cache_dir(cfg),
                          image_size=int(cfg.data.cxr.image_size), workers=int(cfg.data.cxr.workers),
                          max_failure_fraction=float(cfg.data.cxr.max_failure_fraction))
    log.info("cached %d of %d images at %dx%d", summary["images_cached"], summary["images_needed"],
             summary["image_size"], summary["image_size"])


if __name__ == "__main__":
    run_stage(main)
