"""The regime interface: which model a run trains, on which stays, with which objective and balancer.

A regime is a way of training the model of DESIGN section 6 (DESIGN section 11): `supervised`
(the multi-head model under any balancer), `unimodal` (one encoder and its head, alone).
Each is one module here plus one configs/regime/<name>.yaml; the epoch loop, checkpoints,
early stopping and the predictions file are shared (training/train.py, training/engine.py).
A regime whose control flow is not the epoch loop (federated rounds, say) overrides `run`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from omegaconf import DictConfig, OmegaConf
from torch import nn

from models.names import FUSED_HEAD
from models.registry import Registry

if TYPE_CHECKING:
    from training.distributed import DistContext
    from training.train import FitResult


class Regime:
    """Today's behaviour: the multi-head model, the configured balancer, `train.setting` stays."""

    name: ClassVar[str] = "base"

    def __init__(self, cfg: DictConfig, objective: str | Mapping[str, Any] = "supervised",
                 **settings: Any) -> None:
        if settings:
            raise TypeError(f"regime {self.name!r} got unknown settings: {', '.join(sorted(settings))}")
        self.cfg = cfg
        self.objective = objective if isinstance(objective, str) else dict(objective)

    # ---- what is trained ---------------------------------------------------------------
    def build_model(self, num_labels: int, ehr_features: int, channels_last: bool) -> nn.Module:
        import models

        return models.build(self.cfg, num_labels, ehr_features=ehr_features, channels_last=channels_last)

    def dataset_setting(self) -> str:
        """Which stays train and validate: `paired` (with an image) or `partial` (all)."""
        return str(self.cfg.train.setting)

    def balancing(self) -> dict[str, Any]:
        return OmegaConf.to_container(self.cfg.balancing, resolve=True)  # type: ignore[return-value]

    def objective_settings(self, task: str, train_set: Any) -> str | dict[str, Any]:
        """What `build_objective` gets: `regime.objective`; a regime whose objective needs data
        (the distillation regime's teacher logits) adds them here, checked against `train_set`."""
        return self.objective

    def input_files(self, task: str) -> list[Path]:
        """Files beyond the dataset's that the run reads, for its resume fingerprint."""
        return []

    uses_teachers: ClassVar[bool] = False
    """Whether teachers@<task> trains the teacher ensembles for this regime (training/teachers.py)."""

    @property
    def monitored_head(self) -> str:
        """The head whose validation metric early stopping (and the best checkpoint) follows."""
        return FUSED_HEAD

    # ---- how -----------------------------------------------------------------------------
    def run(self, task: str, resume: bool, ctx: DistContext) -> FitResult:
        """The shared epoch loop (training/train.py); imported here, since train.py imports regimes."""
        from training.train import fit_epochs

        return fit_epochs(self, task, resume=resume, ctx=ctx)


REGIMES: Registry[Regime] = Registry("regime")


def register_regime(name: str) -> Callable[[type[Regime]], type[Regime]]:
    """Class decorator: `@register_regime("unimodal")` makes `regime=unimodal` usable."""
    return REGIMES.register_class(name)


def list_regimes(pattern: str = "*") -> list[str]:
    return REGIMES.names(pattern)


def build_regime(cfg: DictConfig) -> Regime:
    """The regime named by cfg.regime.name (default `supervised` for configurations that
    predate the regime group); other keys of cfg.regime are its settings."""
    section = cfg.get("regime") or {"name": "supervised"}
    options = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)
    return REGIMES.build(options, "regime.name", "regime", cfg)
