"""train@<task>: fit the multi-head fusion model under a balancer; write runs/<task>/.

    python -m training.train --task in_hospital_mortality [key=value ...] [--resume]
    torchrun --standalone --nproc_per_node=2 -m training.train --task phenotyping

Reads like torchvision's reference script: `train_one_epoch`, `evaluate`, `fit` (the epoch
loop with early stopping and checkpoints), `main`. The balancer is called at named points
(training/balancers/base.py). The global learning rate is a pure function of the epoch
(training/schedule.py) and the balancer only multiplies it per parameter group.

Outputs (rank 0): model.pt (best by the early-stopping metric), last.pt (every epoch,
atomic, everything `--resume` needs), history.json, dvclive/, and predictions.parquet of
the best model on every val and test stay (the partial set, whatever the training setting,
so evaluation can report both the paired and the partial test sets).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import models
from data_prep.config import check_task, load_config, run_stage, stage_parser
from data_prep.dataset import MultimodalDataset, loader_for
from data_prep.errors import PipelineInputError
from data_prep.io import write_json, write_parquet
from data_prep.transforms import seed_transform
from training.balancers import Balancer, build_balancer
from training.checkpoint import (
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    seed_everything,
)
from training.distributed import DistContext, init_distributed, shutdown
from training.metrics import HEADS, validation_metrics
from training.predictions import PredictionSet, move_batch, predict, predictions_frame
from training.schedule import apply_learning_rates, global_lr, group_learning_rates

log = logging.getLogger(__name__)
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict[str, Any]]


class TrainingDivergedError(RuntimeError):
    """A non-finite loss: training stops, the last good checkpoint stays as it was."""


def get_args_parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, help="task name (task.names in params.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from runs/<task>/last.pt if it exists")
    return parser


# ---- set-up ---------------------------------------------------------------------------------
def autocast_for(device: torch.device, amp: str) -> Callable[[], AbstractContextManager]:
    """Mixed precision on CUDA only (bf16 or fp16); CPU runs in float32."""
    if device.type != "cuda" or amp not in AMP_DTYPES:
        return nullcontext
    return lambda: torch.autocast("cuda", dtype=AMP_DTYPES[amp])


def configure_determinism(cfg: DictConfig, device: torch.device) -> None:
    deterministic = bool(cfg.train.get("deterministic", True))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic


def make_loader(dataset: MultimodalDataset, cfg: DictConfig, ctx: DistContext, train: bool,
                generator: torch.Generator) -> DataLoader:
    """Training loaders shuffle (DistributedSampler under DDP); evaluation keeps the order."""
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=train,
                                 seed=int(cfg.train.seed), drop_last=False) if ctx.distributed else None
    batch_size = int(cfg.train.batch_size) * (1 if train else 2)
    return loader_for(dataset, batch_size=batch_size, num_workers=int(cfg.train.num_workers),
                      train=train, sampler=sampler, generator=generator,
                      pin_memory=ctx.device.type == "cuda", drop_last=train and len(dataset) > batch_size)


def seed_epoch(loader: DataLoader, seed: int, epoch: int, rank: int) -> None:
    """Everything random in epoch `epoch` derives from (seed, epoch, rank): data order,
    augmentation, dropout. A resumed run therefore replays exactly the epochs it missed."""
    epoch_seed = seed + 1000 * epoch
    seed_everything(epoch_seed + rank)
    loader.generator.manual_seed(epoch_seed)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    seed_transform(getattr(loader.dataset, "transform", None), epoch_seed + rank)


def build_optimizer(model: models.MultiHeadFusionModel, cfg: DictConfig) -> torch.optim.AdamW:
    """AdamW with one named parameter group per modality group (ehr, cxr, shared)."""
    placement = str(cfg.balancing.get("unimodal_heads_in", "encoder"))
    groups = [{"name": name, "params": params}
              for name, params in model.modality_parameters(placement).items()]
    return torch.optim.AdamW(groups, lr=float(cfg.train.lr), betas=tuple(cfg.train.betas),
                             weight_decay=float(cfg.train.weight_decay))


# ---- one epoch --------------------------------------------------------------------------------
def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    balancer: Balancer, scaler: torch.amp.GradScaler, ctx: DistContext, epoch: int,
                    cfg: DictConfig, autocast: Callable[[], AbstractContextManager]) -> dict[str, Any]:
    """One pass over the training data; returns mean losses per head (averaged over ranks)."""
    model.train()
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    grad_clip = float(cfg.train.get("grad_clip") or 0.0)
    totals = torch.zeros(len(HEADS) + 1, dtype=torch.float64)
    steps = 0
    progress = tqdm(loader, desc=f"epoch {epoch}", disable=not ctx.is_main, leave=False)
    for step, batch in enumerate(progress):
        batch = move_batch(batch, ctx.device)
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            outputs = balancer.forward(batch)
            total, per_head = balancer.compute_loss(batch, outputs)
        losses = torch.stack([per_head[h].detach().float() for h in HEADS] + [total.detach().float()])
        losses = ctx.all_reduce_mean(losses.double()).cpu()
        if not torch.isfinite(losses).all():
            values = ", ".join(f"{name}={value:.4g}" for name, value in zip([*HEADS, "total"], losses.tolist(), strict=True))
            raise TrainingDivergedError(f"non-finite training loss at epoch {epoch}, step {step} ({values})")
        balancer.backward(total, per_head, scaler.scale)
        scaler.unscale_(optimizer)
        ctx.average_gradients(parameters)
        balancer.after_backward(batch, outputs)
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        scaler.step(optimizer)
        scaler.update()
        totals += losses
        steps += 1
        progress.set_postfix(loss=f"{losses[-1]:.4f}")
    means = (totals / max(steps, 1)).tolist()
    return {"loss": dict(zip(HEADS, means[:len(HEADS)], strict=True)), "loss_total": means[-1], "steps": steps}


def evaluate(model: torch.nn.Module, loader: DataLoader, ctx: DistContext,
             autocast: Callable[[], AbstractContextManager]) -> tuple[PredictionSet, dict]:
    """Predictions gathered over ranks and the validation metrics computed from them."""
    predictions = predict(model, loader, ctx, autocast())
    return predictions, validation_metrics(predictions.labels, predictions.probs, predictions.has_cxr)


# ---- bookkeeping ------------------------------------------------------------------------------
def history_row(epoch: int, alpha: float, rates: dict[str, float], train_stats: dict, val: dict,
                balancer_stats: dict, seconds: float) -> dict[str, Any]:
    """One flat dict per epoch (docs/architecture.md, runs/<task>/history.json)."""
    row: dict[str, Any] = {"epoch": epoch, "lr_global": alpha, **{f"lr_{g}": r for g, r in rates.items()},
                           "train_loss_total": train_stats["loss_total"], "epoch_seconds": seconds}
    for head in HEADS:
        row[f"train_loss_{head}"] = train_stats["loss"][head]
        for metric in ("auroc", "auprc", "loss"):
            row[f"val_{metric}_{head}"] = val["all"][head][metric]
            row[f"val_paired_{metric}_{head}"] = val["paired"][head][metric]
    row.update({f"balancer_{key}": value for key, value in balancer_stats.items()})
    return row


class DVCLiveLogger:
    """DVCLive on rank 0; on resume the directory is rebuilt from the checkpoint's history, so
    it always matches the epochs that count (a killed epoch never leaves a stray step)."""

    def __init__(self, directory: Path, enabled: bool, history: list[dict[str, Any]]) -> None:
        self.live = None
        if enabled:
            from dvclive import Live

            self.live = Live(dir=str(directory), resume=False, save_dvc_exp=False, dvcyaml=None)
            for row in history:
                self.log(row)

    def log(self, row: dict[str, Any]) -> None:
        if self.live is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.live.log_metric(key, float(value))
        self.live.next_step()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


def improved(metric: float, best: float | None) -> bool:
    """Strictly better than the best so far; the first epoch always counts (even if undefined)."""
    if best is None:
        return True
    return not math.isnan(metric) and (math.isnan(best) or metric > best)


RESUME_MUST_MATCH = ("model", "fusion", "balancing", "data.cxr", "train.seed", "train.lr", "train.schedule",
                     "train.epochs", "train.batch_size", "train.setting", "train.loss_weights")


def restore_checkpoint(path: Path, cfg: DictConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       scaler: torch.amp.GradScaler, balancer: Balancer, ctx: DistContext) -> dict[str, Any]:
    """Load last.pt into the live objects; refuses a checkpoint written under other settings,
    since continuing it would silently mix two experiments."""
    state = load_checkpoint(path, map_location=ctx.device)
    saved = OmegaConf.create(state["config"])
    for key in RESUME_MUST_MATCH:
        if OmegaConf.select(saved, key) != OmegaConf.select(cfg, key):
            raise PipelineInputError(f"{path}: written with different {key} settings; "
                                     f"run without --resume to start over")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    balancer.load_state_dict(state["balancer"])
    restore_rng_state(state["rng"])
    return state


# ---- the stage ----------------------------------------------------------------------------------
def fit(cfg: DictConfig, task: str, resume: bool = False, ctx: DistContext | None = None) -> FitResult:
    """Train `task` under cfg and write runs/<task>/; returns that directory and the history
    (identical on every rank: the balancers' decisions come from all-reduced statistics)."""
    ctx = ctx or init_distributed(str(cfg.train.device))
    run_dir = Path(cfg.train.runs_dir) / task
    last_path, best_path = run_dir / "last.pt", run_dir / "model.pt"
    configure_determinism(cfg, ctx.device)
    autocast = autocast_for(ctx.device, str(cfg.train.amp))
    seed = int(cfg.train.seed)

    setting = str(cfg.train.setting)
    train_set = MultimodalDataset(task, "train", setting, cfg, train=True)
    val_set = MultimodalDataset(task, "val", setting, cfg, train=False)
    label_names = train_set.label_names
    generator = torch.Generator()
    train_loader = make_loader(train_set, cfg, ctx, train=True, generator=generator)
    val_loader = make_loader(val_set, cfg, ctx, train=False, generator=torch.Generator())

    seed_everything(seed)
    channels_last = ctx.device.type == "cuda" and bool(cfg.train.channels_last)
    model = models.build(cfg, len(label_names), channels_last=channels_last).to(ctx.device)
    ctx.broadcast_parameters(model)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.device.type == "cuda" and str(cfg.train.amp) == "fp16")
    balancer = build_balancer(OmegaConf.to_container(cfg.balancing, resolve=True), model, ctx,
                              loss_weights=OmegaConf.to_container(cfg.train.loss_weights), seed=seed)

    progress = {"epoch": -1, "history": [], "best_metric": None, "epochs_without_improvement": 0, "stopped": False}
    if resume and last_path.exists():
        progress = restore_checkpoint(last_path, cfg, model, optimizer, scaler, balancer, ctx)
        log.info("resuming after epoch %d of %d", progress["epoch"], int(cfg.train.epochs))
    elif resume:
        log.warning("--resume: %s not found, starting from scratch", last_path)
    start_epoch, history = progress["epoch"] + 1, progress["history"]
    best_metric, waited, stopped = (progress["best_metric"], progress["epochs_without_improvement"],
                                    progress["stopped"])

    logger = DVCLiveLogger(run_dir / "dvclive", ctx.is_main, history)
    metric_name = str(cfg.train.early_stopping.metric)
    patience = int(cfg.train.early_stopping.patience)
    stop_after = cfg.train.get("stop_after_epoch")
    try:
        for epoch in range(start_epoch, int(cfg.train.epochs)):
            if stopped:
                break
            started = time.perf_counter()
            alpha = global_lr(epoch, float(cfg.train.lr), int(cfg.train.epochs), cfg.train.schedule)
            rates = group_learning_rates(alpha, balancer.multipliers)
            apply_learning_rates(optimizer, rates)
            seed_epoch(train_loader, seed, epoch, ctx.rank)
            balancer.on_epoch_start(epoch)
            train_stats = train_one_epoch(model, train_loader, optimizer, balancer, scaler, ctx, epoch, cfg, autocast)
            ctx.broadcast_buffers(model)
            _, val = evaluate(model, val_loader, ctx, autocast)
            balancer.on_epoch_end(epoch, val, train_stats)
            row = history_row(epoch, alpha, rates, train_stats, val, balancer.log_stats(),
                              time.perf_counter() - started)
            history.append(row)
            score = float(val["all"]["fused"][metric_name])
            if improved(score, best_metric):
                best_metric, waited = score, 0
                if ctx.is_main:
                    save_checkpoint(best_path, {"model": model.state_dict(), "epoch": epoch, "metric": metric_name,
                                                "score": score, "label_names": label_names,
                                                "config": OmegaConf.to_container(cfg, resolve=True)})
            else:
                waited += 1
            stopped = waited >= patience
            log.info("epoch %d: val fused %s %.4f, lr ehr/cxr/shared %.2e/%.2e/%.2e%s", epoch, metric_name,
                     score, rates["ehr"], rates["cxr"], rates["shared"], " (early stop)" if stopped else "")
            if ctx.is_main:
                logger.log(row)
                save_checkpoint(last_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "balancer": balancer.state_dict(), "epoch": epoch, "history": history,
                    "best_metric": best_metric, "epochs_without_improvement": waited, "stopped": stopped,
                    "rng": rng_state(), "data_order": {"seed": seed, "next_epoch": epoch + 1},
                    "label_names": label_names, "config": OmegaConf.to_container(cfg, resolve=True)})
            ctx.barrier()
            if stop_after is not None and epoch + 1 >= int(stop_after):
                log.info("train.stop_after_epoch=%s: stopping here (resume with --resume)", stop_after)
                return FitResult(run_dir, history)
    except TrainingDivergedError as err:
        raise TrainingDivergedError(f"{err}; stopped, the last good checkpoint is kept ({last_path})") from None
    finally:
        logger.close()

    write_outputs(cfg, task, run_dir, model, ctx, autocast, label_names, history)
    return FitResult(run_dir, history)


def write_outputs(cfg: DictConfig, task: str, run_dir: Path, model: torch.nn.Module, ctx: DistContext,
                  autocast: Callable[[], AbstractContextManager], label_names: list[str],
                  history: list[dict[str, Any]]) -> None:
    """Predictions of the best model on every val and test stay (partial set), and history.json."""
    ctx.barrier()
    best = load_checkpoint(run_dir / "model.pt", map_location=ctx.device)
    model.load_state_dict(best["model"])
    splits = {}
    for split in ("val", "test"):
        dataset = MultimodalDataset(task, split, "partial", cfg, train=False)
        loader = make_loader(dataset, cfg, ctx, train=False, generator=torch.Generator())
        splits[split] = predict(model, loader, ctx, autocast())
    if ctx.is_main:
        write_parquet(run_dir / "predictions.parquet", predictions_frame(splits, label_names))
        write_json(run_dir / "history.json", [{key: None if isinstance(value, float) and math.isnan(value)
                                               else value for key, value in row.items()} for row in history])


def main() -> None:
    args = get_args_parser().parse_args()
    cfg = load_config(args.params, args.overrides)
    check_task(cfg, args.task)
    ctx = init_distributed(str(cfg.train.device))
    try:
        fit(cfg, args.task, resume=args.resume, ctx=ctx)
    except TrainingDivergedError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    run_stage(main)
