"""Checks of the composed configuration, run by `load_config` before any stage does work.

A setting out of range used to surface late and badly: `train.epochs=0` trained nothing and
then wrote predictions from whatever model.pt an earlier run had left, `batch_size=0` and
`lr=-1` ended in tracebacks deep inside PyTorch. Every rule here turns such a value into one
line naming the setting, its value and what was expected.

Rules are a registry, like fusion methods and balancers: `RANGE_RULES` holds the plain
range checks by dotted key, and packages that own a setting's vocabulary register their own
check with `register_check` (training registers the schedule names, which data_prep may not
import). A key absent from the configuration is skipped, so a reduced test configuration or
a new config group needs no change here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from omegaconf import DictConfig, ListConfig, OmegaConf

from data_prep.errors import PipelineInputError

_ABSENT = object()
ConfigCheck = Callable[[DictConfig], None]
_CHECKS: dict[str, ConfigCheck] = {}


def register_check(name: str) -> Callable[[ConfigCheck], ConfigCheck]:
    """Register `check(cfg)` under `name`; it raises PipelineInputError for a bad setting."""
    def decorator(check: ConfigCheck) -> ConfigCheck:
        _CHECKS[name] = check
        return check
    return decorator


def registered_checks() -> list[str]:
    return sorted(_CHECKS)


@dataclass(frozen=True)
class Range:
    """A number in [low, high] (either side open with `*_open`), optionally an integer or null."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    nullable: bool = False

    def holds(self, value: object) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        text = f"{kind} {' and '.join(bounds)}".strip()
        return f"{text} or null" if self.nullable else text


POSITIVE_INT = Range(low=1, integer=True)
COUNT = Range(low=0, integer=True)
FRACTION = Range(low=0, high=1)

# One rule per training setting, for the student (`train.*`) and for MIND's teachers, whose
# own `teachers.train.*` mirrors it (configs/teachers/): a bad teacher setting fails here too,
# not minutes into the teachers stage.
TRAINING_RULES: dict[str, Range] = {
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "lr": Range(low=0, low_open=True),
    "weight_decay": Range(low=0),
    "length_pool": COUNT,
    "grad_clip": Range(low=0, nullable=True),
    "early_stopping.patience": COUNT,
    "schedule.warmup_epochs": COUNT,
    "schedule.min_lr_fraction": FRACTION,
    "schedule.step_size": POSITIVE_INT,
    "schedule.gamma": Range(low=0, low_open=True),
}
RANGE_RULES: dict[str, Range] = {
    **{f"{prefix}.{key}": rule for prefix in ("train", "teachers.train") for key, rule in TRAINING_RULES.items()},
    "train.num_workers": COUNT,
    "train.stop_after_epoch": Range(low=1, integer=True, nullable=True),
    "data.cxr.image_size": POSITIVE_INT,
    "data.cxr.crop_size": POSITIVE_INT,
    "data.cxr.workers": COUNT,
    "data.cxr.max_failure_fraction": FRACTION,
    "data.ehr.bin_hours": Range(low=0, low_open=True),
    "data.ehr.block_size_mb": Range(low=0, low_open=True),
    "data.ehr.sort_buckets": POSITIVE_INT,
    "data.split.train": FRACTION,
    "data.split.val": FRACTION,
    "data.split.test": FRACTION,
    "task.min_age": Range(low=0),
    "eval.n_bootstrap": POSITIVE_INT,
    "eval.ci_level": Range(low=0, high=1, low_open=True, high_open=True),
    "eval.min_cell_size": COUNT,
}
CHOICE_RULES: dict[str, tuple[str, ...]] = {
    "train.setting": ("paired", "partial"),
    "model.unimodal_heads": ("joint", "probe"),
}


def validate_config(cfg: DictConfig) -> None:
    """Apply every range, choice and registered check; the first failure is one line."""
    for key, rule in RANGE_RULES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not rule.holds(value):
            raise PipelineInputError(f"{key}={value!r}: expected {rule.describe()}")
    for key, choices in CHOICE_RULES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and value not in choices:
            raise PipelineInputError(f"{key}={value!r}: expected one of {', '.join(choices)}")
    for check in _CHECKS.values():
        check(cfg)


@register_check("threads")
def _check_threads(cfg: DictConfig) -> None:
    """`train.threads`: `auto` or a positive integer (training/threads.py)."""
    value = OmegaConf.select(cfg, "train.threads", default=_ABSENT)
    if value is _ABSENT or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return
    raise PipelineInputError(f"train.threads={value!r}: expected 'auto' or a positive integer")


@register_check("relations")
def _check_relations(cfg: DictConfig) -> None:
    """Settings that are only wrong together: a crop larger than the cached image, warm-up
    covering every epoch (no epoch of the schedule itself), split fractions not adding up."""
    image, crop = (OmegaConf.select(cfg, f"data.cxr.{k}", default=None) for k in ("image_size", "crop_size"))
    if image is not None and crop is not None and crop > image:
        raise PipelineInputError(f"data.cxr.crop_size={crop}: expected at most data.cxr.image_size={image}")
    epochs = OmegaConf.select(cfg, "train.epochs", default=None)
    warmup = OmegaConf.select(cfg, "train.schedule.warmup_epochs", default=None)
    if epochs is not None and warmup and warmup >= epochs:
        raise PipelineInputError(f"train.schedule.warmup_epochs={warmup}: expected fewer than "
                                 f"train.epochs={epochs}")
    split = OmegaConf.select(cfg, "data.split", default=None)
    if isinstance(split, DictConfig) and all(k in split for k in ("train", "val", "test")):
        total = float(split.train) + float(split.val) + float(split.test)
        if abs(total - 1.0) > 1e-6:
            raise PipelineInputError(f"data.split: train + val + test = {total:g}, expected 1")


def known_keys(cfg: DictConfig) -> Iterator[str]:
    """Every dotted key of the configuration, inner nodes included (derived, never listed by hand)."""
    def walk(node: object, prefix: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                path = f"{prefix}{key}"
                yield path
                yield from walk(value, f"{path}.")
    yield from walk(OmegaConf.to_container(cfg, resolve=False), "")


def check_known_key(cfg: DictConfig, key: str, where: str = "params.yaml") -> None:
    """An override must name a setting that exists; a typo would otherwise be added silently
    and the stage would run with the default. One element of a list cannot be overridden
    (OmegaConf cannot merge it): the whole list must be given."""
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    if parent and isinstance(OmegaConf.select(cfg, parent, default=None), ListConfig):
        raise PipelineInputError(f"override {key}: {parent} is a list; give the whole list, "
                                 f"e.g. {parent}=[a,b]")
    if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
        return
    keys = list(known_keys(cfg))
    closest = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    hint = f"closest known key: {closest[0]}" if closest else f"no similar key in {where}"
    raise PipelineInputError(f"override {key}: unknown setting ({hint}; prefix with + to add a new one)")
