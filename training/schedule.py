"""The global learning rate as a pure function of the epoch, and per-group rates on top of it.

As in nanoGPT's `get_lr(it)`, nothing is stepped or stored: the rate of epoch `e` is
computed from the configuration alone, so a resumed run gets exactly the rates of an
uninterrupted one. A balancer (MILES, MSLR, MSES) contributes only multipliers per parameter group;
`lr_group = global_lr(epoch) * multiplier_group`, so reductions never compound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from data_prep.errors import PipelineInputError
from data_prep.validation import register_check
from models.registry import Registry

SCHEDULES: Registry[float] = Registry("learning-rate schedule")


@register_check("train.schedule.name")
def check_schedule_name(cfg: DictConfig) -> None:
    """Registered with data_prep's config checks (which may not import training), so
    `load_config` rejects an unknown schedule in every process that imported this module
    (training.train does), before any data are read, instead of a KeyError at epoch 0."""
    name = OmegaConf.select(cfg, "train.schedule.name", default=None)
    if name is not None and str(name) not in SCHEDULES:
        raise PipelineInputError(f"train.schedule.name={name!r}: unknown learning-rate schedule "
                                 f"(known: {', '.join(SCHEDULES.names())})")


@SCHEDULES.register("cosine")
def cosine(epochs_done: int, decay_epochs: int, settings: Mapping[str, Any]) -> float:
    """Half a cosine from 1 (first epoch) down to `min_lr_fraction` (last epoch)."""
    floor = float(settings.get("min_lr_fraction", 0.0))
    progress = min(1.0, epochs_done / max(1, decay_epochs - 1))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("step")
def step(epochs_done: int, decay_epochs: int, settings: Mapping[str, Any]) -> float:
    """Multiply by `gamma` every `step_size` epochs."""
    return float(settings.get("gamma", 0.1)) ** (epochs_done // int(settings.get("step_size", 10)))


@SCHEDULES.register("constant")
def constant(epochs_done: int, decay_epochs: int, settings: Mapping[str, Any]) -> float:
    return 1.0


def global_lr(epoch: int, base_lr: float, total_epochs: int, settings: Mapping[str, Any]) -> float:
    """The learning rate of `epoch` (0-based): linear warm-up, then the named schedule's factor."""
    warmup = int(settings.get("warmup_epochs", 0) or 0)
    if epoch < warmup:
        return base_lr * (epoch + 1) / warmup
    factor = SCHEDULES.get(str(settings.get("name", "cosine")))
    return base_lr * factor(epoch - warmup, total_epochs - warmup, settings)


def group_learning_rates(alpha: float, multipliers: Mapping[str, float]) -> dict[str, float]:
    return {group: alpha * float(multiplier) for group, multiplier in multipliers.items()}


def apply_learning_rates(optimizer: torch.optim.Optimizer, rates: Mapping[str, float]) -> None:
    """Set each named parameter group's rate (groups carry a `name`: ehr, cxr, shared)."""
    for group in optimizer.param_groups:
        group["lr"] = float(rates[group["name"]])
