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

from omegaconf import DictConfig, ListConfig, OmegaConf

from data_prep.errors import PipelineInputError
from data_prep.validation import check_known_key, validate_config

DEFAULT_PARAMS = "params.yaml"
log = logging.getLogger(__name__)


def load_config(params: str | os.PathLike[str] = DEFAULT_PARAMS,
                overrides: Sequence[str] = ()) -> DictConfig:
    """Load params.yaml, apply dotted `key=value` overrides (values parsed as YAML), validate.

    An override must name an existing setting (`+key=value` adds a new one on purpose) and
    keep its type; then every setting is checked (data_prep.validation), so a bad value stops
    the stage in one line before it reads any data.
    """
    path = Path(params)
    if not path.is_file():
        raise PipelineInputError(f"{path}: configuration file not found (expected the composed params.yaml)")
    cfg = OmegaConf.load(path)
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise PipelineInputError(f"override {bad[0]!r}: expected key=value, e.g. train.epochs=3")
    if overrides:
        for item in overrides:
            key = item.split("=", 1)[0]
            if not key.startswith("+"):
                check_known_key(cfg, key, where=path.name)
            key = key.lstrip("+")
            check_override_type(key, OmegaConf.select(cfg, key), _parsed_value(item))
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item.lstrip("+") for item in overrides]))
    validate_config(cfg)
    return cfg


def _parsed_value(item: str) -> object:
    """The override's value as OmegaConf's dotlist parser reads it (YAML scalars, lists, dicts)."""
    key = item.split("=", 1)[0].lstrip("+")
    return OmegaConf.select(OmegaConf.from_dotlist([item.lstrip("+")]), key)


def _kind(value: object) -> str | None:
    """The type family an override must keep; None where anything goes (null or text)."""
    if isinstance(value, bool):
        return "a boolean (true/false)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, list | ListConfig):
        return "a list, e.g. [a, b]"
    if isinstance(value, dict | DictConfig):
        return "a mapping, e.g. {a: 1}"
    return None


def check_override_type(key: str, current: object, new: object, where: str = "params.yaml") -> None:
    """A `key=value` override must keep the type of the value it replaces.

    Without this a typo such as `data.cxr.image_size=abc` is only noticed deep inside a
    stage as a ValueError traceback; here it becomes one line naming the setting. Null and
    text settings accept anything (their stages validate them), an integer fits a number.
    """
    expected = _kind(current)
    if expected is None or new is None:
        return
    if _kind(new) == expected or (expected == "a number" and _kind(new) == "an integer"):
        return
    raise PipelineInputError(f"override {key}={new!r}: expected {expected} ({where} has {current!r})")


def check_task(cfg: DictConfig, task: str) -> None:
    """A stage's `--task` must name one of task.names; otherwise its paths would not exist."""
    names = list(cfg.task.names)
    if task not in names:
        raise PipelineInputError(f"--task {task!r}: expected one of task.names ({', '.join(names)})")


def stage_parser(description: str) -> argparse.ArgumentParser:
    """The common command line of every stage: `--params FILE` and trailing `key=value` overrides."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default=DEFAULT_PARAMS,
                        help="composed configuration file (default: params.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides of params.yaml, e.g. data.cxr.image_size=128")
    return parser


def task_stage_parser(description: str) -> argparse.ArgumentParser:
    """stage_parser plus the `--task` that every per-task stage (`<stage>@<task>`) takes."""
    parser = stage_parser(description)
    parser.add_argument("--task", required=True, help="task name, one of task.names in params.yaml")
    return parser


def task_stage_config(args: argparse.Namespace) -> DictConfig:
    """The configuration of a per-task stage's command line, its `--task` checked against it."""
    cfg = load_config(args.params, args.overrides)
    check_task(cfg, args.task)
    return cfg


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
