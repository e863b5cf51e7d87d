"""Reading the composed configuration (params.yaml) the same way in every stage.

Stages never use `@hydra.main`: DVC composes `configs/` into `params.yaml`, and each stage
reads that file with OmegaConf and applies `key=value` overrides from its command line, so
tests and benchmarks can call a stage without DVC.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from data_prep.errors import PipelineInputError

DEFAULT_PARAMS = "params.yaml"
log = logging.getLogger(__name__)


def load_config(params: str | os.PathLike[str] = DEFAULT_PARAMS,
                overrides: Sequence[str] = ()) -> DictConfig:
    """Load params.yaml and apply dotted `key=value` overrides (values parsed as YAML)."""
    path = Path(params)
    if not path.is_file():
        raise PipelineInputError(f"{path}: configuration file not found (expected the composed params.yaml)")
    cfg = OmegaConf.load(path)
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise PipelineInputError(f"override {bad[0]!r}: expected key=value, e.g. train.epochs=3")
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return cfg


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The common command line of every stage: `--params FILE` and trailing `key=value` overrides."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=DEFAULT_PARAMS,
                        help="composed configuration file (default: params.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides of params.yaml, e.g. data.cxr.image_size=128")
    return parser


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); bad input becomes one line on stderr and exit status 2."""
    setup_logging(os.environ.get("PIPELINE_VERBOSE") == "1")
    try:
        main()
    except PipelineInputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
