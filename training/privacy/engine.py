"""`PrivateTraining`: DP-SGD with the patient as the unit of privacy, as an option of the Engine.

What it does to a run (docs/privacy.md):
- batches are Poisson samples of *patients* with rate q = train.batch_size / training stays
  (a drawn patient brings all their stays), round(1/q) steps per epoch;
- after the backward pass, the per-stay gradients (Opacus's hooks) are summed per patient,
  and each patient's gradient is clipped to `max_grad_norm`; Gaussian noise of standard
  deviation noise_multiplier x max_grad_norm is added to the sum (Opacus's DPOptimizer);
- the noise multiplier is solved from (target_epsilon, delta, q, epochs x steps) with
  Opacus's accountant before any training; a budget that cannot be met stops the stage;
- the accountant (its history is checkpointed) reports the epsilon spent after every epoch.
So the guarantee is (epsilon, delta)-DP with respect to adding or removing one patient with
all their ICU stays, for everything computed from the weights.

Balancers that only set learning rates from validation metrics (MILES, MSLR, MSES) act on the
noised gradients as usual; balancers that modulate gradients or the loss from the training
batch are refused (`refusal_for_balancer`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.grad_sample.grad_sample_module import GradSampleHooks
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader

from data_prep.dataset import MultimodalDataset
from data_prep.errors import PipelineInputError
from data_prep.transforms import seed_worker
from training.objectives.base import Objective
from training.objectives.supervised import Supervised
from training.privacy.compat import make_private_compatible
from training.privacy.objective import DecomposableSupervised
from training.privacy.sampling import EmptyTolerantCollate, PatientPoissonBatchSampler
from training.privacy.settings import PrivacySettings

log = logging.getLogger(__name__)

# Balancers whose decisions come from validation metrics only and act through learning rates:
# they compose with DP-SGD (post-processing of the noised gradient; the validation patients
# are not the training patients the guarantee protects).
LEARNING_RATE_BALANCERS = {
    "none": "no balancing",
    "miles": "per-modality learning rates from validation utilization rates",
    "mslr_k": "fixed per-modality learning rates", "mslr_s": "scheduled per-modality learning rates",
    "mslr_d": "per-modality learning rates from validation metrics",
    "mses": "stops an encoder (learning rate 0) from validation metrics",
}
REFUSED_BALANCERS = {
    "ogm": "rescales each modality's gradient by a coefficient computed from the training batch",
    "ogm_ge": "rescales and adds noise to gradients from training-batch scores",
    "agm": "modulates gradients from training-batch Shapley probes",
    "mmpareto": "combines per-loss gradients of the whole batch",
    "pmr": "adds a prototype term computed across the batch (not a per-patient loss)",
    "gradient_blending": "re-weights the heads from training losses (a non-private statistic)",
}


def refusal_for_balancer(name: str) -> str | None:
    """Why `balancing.name` cannot run under DP-SGD, or None when it can."""
    if name in LEARNING_RATE_BALANCERS:
        return None
    reason = REFUSED_BALANCERS.get(name, "is not known to act only through learning rates")
    return (f"privacy.enabled=true with balancing.name={name}: it {reason}, which DP-SGD's per-patient "
            f"clipping would bypass or leak; use one of {', '.join(LEARNING_RATE_BALANCERS)}")


class PrivateTraining:
    """The DP state of one run: noise level, sampler, accountant; attached to an Engine."""

    def __init__(self, settings: PrivacySettings, *, subject_ids: np.ndarray, batch_size: int,
                 epochs: int) -> None:
        self.settings = settings
        self.n_stays = len(subject_ids)
        self.n_patients = int(len(np.unique(subject_ids)))
        if self.n_patients == 0:
            raise PipelineInputError("privacy: the training split has no patients")
        self.subject_ids = np.asarray(subject_ids)
        self.delta = settings.resolved_delta(self.n_patients)
        self.sample_rate = min(1.0, float(batch_size) / self.n_stays)
        self.steps_per_epoch = max(1, round(1.0 / self.sample_rate))
        self.epochs = int(epochs)
        self.noise_multiplier = solve_noise_multiplier(settings, self.delta, self.sample_rate,
                                                       self.epochs * self.steps_per_epoch)
        self.accountant = create_accountant(settings.accountant)
        self.optimizer: DPOptimizer | None = None
        self.hooks: GradSampleHooks | None = None
        log.info("privacy: target epsilon %.3g, delta %.3g (%d training patients), patient sample rate %.4f, "
                 "%d steps per epoch, noise multiplier %.3f, clipping norm %.3g, %s accountant",
                 settings.target_epsilon, self.delta, self.n_patients, self.sample_rate, self.steps_per_epoch,
                 self.noise_multiplier, settings.max_grad_norm, settings.accountant)

    @classmethod
    def from_config(cls, cfg: DictConfig, train_set: MultimodalDataset, *, balancing: Mapping[str, Any],
                    objective: Mapping[str, Any] | str, world_size: int = 1) -> PrivateTraining | None:
        """None when `privacy.enabled` is false; otherwise checks everything that would make the
        guarantee false (one line each) before any model is built."""
        settings = PrivacySettings.from_config(cfg)
        if not settings.enabled:
            return None
        refusal = refusal_for_balancer(str(dict(balancing).get("name", "none")))
        if refusal:
            raise PipelineInputError(refusal)
        objective_name = objective if isinstance(objective, str) else dict(objective).get("name")
        if objective_name != "supervised":
            raise PipelineInputError(f"privacy.enabled=true with regime.objective={objective_name}: only the "
                                     "supervised objective is known to be a sum of per-stay losses")
        if world_size > 1:
            raise PipelineInputError("privacy.enabled=true under torchrun: distributed DP-SGD is not "
                                     "implemented here; run on one process")
        return cls(settings, subject_ids=train_set.subject_ids, batch_size=int(cfg.train.batch_size),
                   epochs=int(cfg.train.epochs))

    # ---- model, loader, optimizer ---------------------------------------------------------
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Substitutions for per-sample gradients (training/privacy/compat.py), logged."""
        fixed, self.substitutions = make_private_compatible(model)
        return fixed

    def loader(self, dataset: MultimodalDataset, generator: torch.Generator, num_workers: int = 0,
               pin_memory: bool = False) -> DataLoader:
        """Poisson batches of patients; `seed_epoch` reseeds `generator` every epoch."""
        sampler = PatientPoissonBatchSampler(dataset.subject_ids, self.sample_rate, self.steps_per_epoch, generator)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                          collate_fn=EmptyTolerantCollate(dataset[0]), worker_init_fn=seed_worker,
                          generator=generator, pin_memory=pin_memory)

    def wrap_objective(self, objective: Objective) -> Objective:
        if type(objective) is not Supervised:
            raise PipelineInputError(f"privacy: objective {objective.name!r} is not known to be a sum of "
                                     "per-stay losses")
        return DecomposableSupervised(objective.model)

    def attach(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> DPOptimizer:
        """Per-sample gradient hooks on `model` (not wrapped: its state dict keeps its keys) and
        the optimizer that clips per patient, adds noise and steps the accountant."""
        self.hooks = GradSampleHooks(model, batch_first=True, loss_reduction="mean", strict=True)
        expected_patients = max(1, round(self.sample_rate * self.n_patients))
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=self.settings.max_grad_norm,
                                     expected_batch_size=expected_patients, loss_reduction="mean")
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        return self.optimizer

    # ---- per step ------------------------------------------------------------------------
    def group_by_patient(self, subject_ids: torch.Tensor) -> None:
        """Sum each parameter's per-stay gradients per patient, so that clipping bounds a
        patient's whole contribution (two stays of one patient share one clipping norm)."""
        _, patient = torch.unique(subject_ids.detach().cpu(), return_inverse=True)
        n_patients = int(patient.max()) + 1 if patient.numel() else 0
        if n_patients == len(patient):
            return  # one stay per patient in this batch: per-stay gradients are per-patient ones
        for parameter in self.optimizer.params:
            grad_sample = parameter.grad_sample
            if grad_sample is None:
                grad_sample = parameter.new_zeros((len(patient), *parameter.shape))
            index = patient.to(grad_sample.device)
            parameter.grad_sample = grad_sample.new_zeros((n_patients, *grad_sample.shape[1:])) \
                .index_add_(0, index, grad_sample)

    def empty_step(self) -> None:
        """A step on an empty Poisson batch: no gradient, noise only (the accountant counts it)."""
        self.optimizer.zero_grad(set_to_none=True)
        for parameter in self.optimizer.params:
            parameter.grad_sample = parameter.new_zeros((0, *parameter.shape))
        self.optimizer.step()

    # ---- bookkeeping -----------------------------------------------------------------------
    def epsilon(self) -> float:
        return float(self.accountant.get_epsilon(delta=self.delta)) if len(self.accountant) else 0.0

    def log_stats(self) -> dict[str, float]:
        return {"privacy_epsilon": self.epsilon(), "privacy_delta": self.delta,
                "privacy_noise_multiplier": self.noise_multiplier}

    def summary(self) -> dict[str, Any]:
        return {"unit": "patient", "target_epsilon": self.settings.target_epsilon, "delta": self.delta,
                "epsilon": self.epsilon(), "max_grad_norm": self.settings.max_grad_norm,
                "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate,
                "steps_per_epoch": self.steps_per_epoch, "accountant": self.settings.accountant,
                "training_patients": self.n_patients, "training_stays": self.n_stays,
                "substitutions": list(getattr(self, "substitutions", []))}

    def state_dict(self) -> dict[str, Any]:
        return {"accountant": self.accountant.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "accountant" in state:
            self.accountant.load_state_dict(dict(state["accountant"]))


def solve_noise_multiplier(settings: PrivacySettings, delta: float, sample_rate: float, steps: int) -> float:
    """Opacus's solver; a budget it cannot reach is one line naming the setting."""
    try:
        return float(get_noise_multiplier(target_epsilon=settings.target_epsilon, target_delta=delta,
                                          sample_rate=sample_rate, steps=steps, accountant=settings.accountant))
    except ValueError as err:
        raise PipelineInputError(f"privacy.target_epsilon={settings.target_epsilon:g}: cannot be met with "
                                 f"delta={delta:.3g}, sample rate {sample_rate:.4f} and {steps} steps ({err})") from None
