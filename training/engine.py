"""The training engine: the state of one run and the two things done with it, train and evaluate.

`Engine` holds what a run is made of (model, optimizer, AMP scaler, objective, balancer,
distributed context, gradient clipping, precision) so that the epoch loop of
training/train.py, a federated client or a pretraining run reads like torchvision's
reference script: `engine.start_epoch(e)`, `engine.train_one_epoch(loader, e)`,
`engine.evaluate(loader)`, `engine.end_epoch(...)`, and `state_dict()` for checkpoints.

One step, in order (docs/methods/regimes.md has the table):

    step = objective.forward(batch);      balancer.after_forward(step)
    loss = objective.loss(step, balancer.head_weights());  loss = balancer.adjust_loss(step, loss)
    balancer.backward(step, loss, scaler.scale);  unscale;  average gradients over ranks
    balancer.after_backward(step);  clip;  optimizer step
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from training.balancers import Balancer, build_balancer
from training.distributed import DistContext
from training.metrics import validation_metrics
from training.objectives import Objective, build_objective
from training.predictions import PredictionSet, move_batch, predict
from training.schedule import apply_learning_rates, global_lr, group_learning_rates

if TYPE_CHECKING:
    from training.privacy import PrivateTraining

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingDivergedError(RuntimeError):
    """A non-finite loss: training stops, the last good checkpoint stays as it was."""


def autocast_for(device: torch.device, amp: str) -> Callable[[], AbstractContextManager]:
    """Mixed precision on CUDA only (bf16 or fp16); CPU runs in float32."""
    if device.type != "cuda" or amp not in AMP_DTYPES:
        return nullcontext
    return lambda: torch.autocast("cuda", dtype=AMP_DTYPES[amp])


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic


def build_optimizer(model: torch.nn.Module, train: DictConfig, unimodal_heads_in: str) -> torch.optim.AdamW:
    """AdamW with one named parameter group per learning-rate group that has parameters
    (ehr, cxr, shared for the multi-head model; a unimodal model has one)."""
    groups = [{"name": name, "params": params}
              for name, params in model.modality_parameters(unimodal_heads_in).items() if params]
    return torch.optim.AdamW(groups, lr=float(train.lr), betas=tuple(train.betas),
                             weight_decay=float(train.weight_decay))


class Engine:
    """One run's training state; `from_config` builds it, the loop drives it."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, objective: Objective,
                 balancer: Balancer, ctx: DistContext, *, base_lr: float, epochs: int,
                 schedule: Mapping[str, Any], amp: str = "off", grad_clip: float = 0.0,
                 privacy: PrivateTraining | None = None) -> None:
        self.privacy = privacy
        if privacy is not None:  # DP-SGD (training/privacy): per-patient clipping replaces grad_clip
            objective, optimizer = privacy.wrap_objective(objective), privacy.attach(model, optimizer)
            amp, grad_clip = "off", 0.0
        self.model, self.optimizer, self.objective, self.balancer, self.ctx = model, optimizer, objective, balancer, ctx
        self.base_lr, self.epochs, self.schedule = float(base_lr), int(epochs), dict(schedule)
        self.grad_clip = float(grad_clip or 0.0)
        self.autocast = autocast_for(ctx.device, amp)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.device.type == "cuda" and amp == "fp16")
        self.heads = tuple(model.head_names)
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]

    @classmethod
    def from_config(cls, cfg: DictConfig, model: torch.nn.Module, ctx: DistContext,
                    balancing: Mapping[str, Any], objective: Mapping[str, Any] | str,
                    privacy: PrivateTraining | None = None) -> Engine:
        """The engine of `cfg.train` around `model`; the regime chooses the balancing and the
        objective settings (the unimodal regime trains without a balancer); `privacy`, when
        given, makes every step a DP-SGD step (its model must have been prepared by it)."""
        train = cfg.train
        balancing = dict(balancing)
        optimizer = build_optimizer(model, train, str(balancing.get("unimodal_heads_in", "encoder")))
        balancer = build_balancer(balancing, model, ctx, loss_weights=OmegaConf.to_container(train.loss_weights),
                                  seed=int(train.seed))
        return cls(model, optimizer, build_objective(objective, model), balancer, ctx,
                   base_lr=float(train.lr), epochs=int(train.epochs),
                   schedule=OmegaConf.to_container(train.schedule, resolve=True),
                   amp=str(train.amp), grad_clip=float(train.get("grad_clip") or 0.0), privacy=privacy)

    # ---- epoch -------------------------------------------------------------------------
    def start_epoch(self, epoch: int) -> tuple[float, dict[str, float]]:
        """Set this epoch's rates (global schedule x the balancer's multipliers); returns
        (global rate, rate per group present in the optimizer)."""
        alpha = global_lr(epoch, self.base_lr, self.epochs, self.schedule)
        present = {group["name"] for group in self.optimizer.param_groups}
        rates = {g: r for g, r in group_learning_rates(alpha, self.balancer.multipliers).items() if g in present}
        apply_learning_rates(self.optimizer, rates)
        self.balancer.on_epoch_start(epoch)
        return alpha, rates

    def train_one_epoch(self, loader: Iterable[dict[str, Any]], epoch: int) -> dict[str, Any]:
        """One pass over the training data; returns mean losses per head (averaged over ranks)."""
        self.model.train()
        names = [*self.heads, "total"]
        totals = torch.zeros(len(names), dtype=torch.float64)
        steps = 0
        progress = tqdm(loader, desc=f"epoch {epoch}", disable=not self.ctx.is_main, leave=False)
        for index, batch in enumerate(progress):
            losses = self.train_step(move_batch(batch, self.ctx.device), epoch, index)
            if losses is None:  # an empty Poisson batch under DP-SGD: a noise-only step, no loss
                continue
            totals += losses
            steps += 1
            progress.set_postfix(loss=f"{losses[-1]:.4f}")
        self.ctx.broadcast_buffers(self.model)  # batch-norm statistics: rank 0's, before anyone evaluates
        means = (totals / max(steps, 1)).tolist()
        return {"loss": dict(zip(self.heads, means[:-1], strict=True)), "loss_total": means[-1], "steps": steps}

    def train_step(self, batch: Mapping[str, torch.Tensor], epoch: int, index: int) -> torch.Tensor | None:
        """One optimizer step; returns the rank-averaged head losses and total (float64, CPU),
        None for an empty batch (DP-SGD's Poisson sampling)."""
        balancer, optimizer = self.balancer, self.optimizer
        if self.privacy is not None and int(batch["labels"].shape[0]) == 0:
            self.privacy.empty_step()
            return None
        optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            step = self.objective.forward(batch)
            balancer.after_forward(step)
            loss = balancer.adjust_loss(step, self.objective.loss(step, balancer.head_weights()))
        logged = torch.stack([loss.per_head[h].detach().float() for h in self.heads] + [loss.total.detach().float()])
        logged = self.ctx.all_reduce_mean(logged.double()).cpu()
        if not torch.isfinite(logged).all():
            values = ", ".join(f"{name}={value:.4g}" for name, value in
                               zip([*self.heads, "total"], logged.tolist(), strict=True))
            raise TrainingDivergedError(f"non-finite training loss at epoch {epoch}, step {index} ({values})")
        balancer.backward(step, loss, self.scaler.scale)
        self.scaler.unscale_(optimizer)
        self.ctx.average_gradients(self.parameters)
        balancer.after_backward(step)
        if self.privacy is not None:
            self.privacy.group_by_patient(batch["subject_id"])
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        return logged

    def evaluate(self, loader: Iterable[dict[str, Any]]) -> tuple[PredictionSet, dict]:
        """Predictions gathered over ranks and the validation metrics computed from them."""
        predictions = predict(self.model, loader, self.ctx, self.autocast())
        return predictions, validation_metrics(predictions.labels, predictions.probs, predictions.has_cxr)

    def end_epoch(self, epoch: int, val_metrics: Mapping[str, Any], train_stats: Mapping[str, Any]) -> dict[str, Any]:
        """The balancer's decision for the next epoch (from gathered validation metrics); returns
        what it logs."""
        self.balancer.on_epoch_end(epoch, val_metrics, train_stats)
        return self.balancer.log_stats()

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "balancer": self.balancer.state_dict(),
                "objective": self.objective.state_dict(),
                **({"privacy": self.privacy.state_dict()} if self.privacy is not None else {})}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.balancer.load_state_dict(state["balancer"])
        self.objective.load_state_dict(state.get("objective", {}))
        if self.privacy is not None:
            self.privacy.load_state_dict(state.get("privacy", {}))
