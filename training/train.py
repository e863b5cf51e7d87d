"""train@<task>: train the configured regime's model (by default the multi-head fusion model
under a balancer); write runs/<task>/.

    python -m training.train --task in_hospital_mortality [key=value ...] [--resume]
    python -m training.train --task phenotyping regime=... (see configs/regime/)
    torchrun --standalone --nproc_per_node=2 -m training.train --task phenotyping

Reads like torchvision's reference script: `fit_epochs` is the epoch loop (train, validate,
balance, keep the best, checkpoint), the state it drives is one `Engine`
(training/engine.py: model, optimizer, scaler, objective, balancer, precision), and the
regime (training/regimes) says which model is trained on which stays. The global learning
rate is a pure function of the epoch (training/schedule.py); the balancer only multiplies it
per parameter group.

Outputs (rank 0): model.pt (best by the early-stopping metric), last.pt (every epoch,
atomic, everything `--resume` needs), history.json, dvclive/, and predictions.parquet of
the best model on every val and test stay (the partial set, whatever the training setting,
so evaluation can report both the paired and the partial test sets).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, DistributedSampler

from data_prep import paths
from data_prep.config import run_stage, task_stage_config, task_stage_parser
from data_prep.dataset import DatasetPaths, MultimodalDataset, loader_for
from data_prep.io import remove_stale_temporaries, write_json, write_parquet
from data_prep.transforms import seed_transform
from training.checkpoint import (
    load_checkpoint,
    restore_rng_state,
    resume_mismatch,
    rng_state,
    run_fingerprint,
    save_checkpoint,
    seed_everything,
)
from training.distributed import DistContext, init_distributed, shutdown
from training.engine import Engine, TrainingDivergedError, configure_determinism
from training.predictions import predict, predictions_frame
from training.privacy import PrivateTraining
from training.regimes import Regime, build_regime
from training.threads import configure_threads

log = logging.getLogger(__name__)
__all__ = ["FitResult", "TrainingDivergedError", "fit", "fit_epochs", "main"]


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict[str, Any]]


def get_args_parser() -> argparse.ArgumentParser:
    parser = task_stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true",
                        help="continue runs/<task>/last.pt if it was written by the same settings, code "
                             "and data (dvc repro passes it); otherwise start over")
    return parser


# ---- set-up ---------------------------------------------------------------------------------
def make_loader(dataset: MultimodalDataset, cfg: DictConfig, ctx: DistContext, train: bool,
                generator: torch.Generator) -> DataLoader:
    """Training loaders shuffle (DistributedSampler under DDP); both batch stays of similar EHR
    length when `train.length_pool` > 0 on one process (DDP keeps its sampler's shards)."""
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=train,
                                 seed=int(cfg.train.seed), drop_last=False) if ctx.distributed else None
    batch_size = int(cfg.train.batch_size) * (1 if train else 2)
    return loader_for(dataset, batch_size=batch_size, num_workers=int(cfg.train.num_workers),
                      train=train, sampler=sampler, generator=generator,
                      pin_memory=ctx.device.type == "cuda", drop_last=train and len(dataset) > batch_size,
                      length_pool=int(cfg.train.get("length_pool", 0)))


def seed_epoch(loader: DataLoader, seed: int, epoch: int, rank: int) -> None:
    """Everything random in epoch `epoch` derives from (seed, epoch, rank): data order,
    augmentation, dropout. A resumed run therefore replays exactly the epochs it missed."""
    epoch_seed = seed + 1000 * epoch
    seed_everything(epoch_seed + rank)
    loader.generator.manual_seed(epoch_seed)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    seed_transform(getattr(loader.dataset, "transform", None), epoch_seed + rank)


def input_files(paths: DatasetPaths) -> list[Path]:
    """The files a run reads, for its resume fingerprint."""
    files = [paths.labels, paths.pairs]
    for folder in (paths.ehr_dir, paths.cache_dir):
        files += sorted(folder.iterdir()) if folder.is_dir() else [folder]
    return files


# ---- bookkeeping ------------------------------------------------------------------------------
def history_row(epoch: int, alpha: float, rates: dict[str, float], train_stats: dict, val: dict,
                balancer_stats: dict, seconds: float) -> dict[str, Any]:
    """One flat dict per epoch (docs/architecture.md, runs/<task>/history.json)."""
    row: dict[str, Any] = {"epoch": epoch, "lr_global": alpha, **{f"lr_{g}": r for g, r in rates.items()},
                           "train_loss_total": train_stats["loss_total"], "epoch_seconds": seconds}
    for head, loss in train_stats["loss"].items():
        row[f"train_loss_{head}"] = loss
        for metric in ("auroc", "auprc", "loss"):
            row[f"val_{metric}_{head}"] = val["all"][head][metric]
            row[f"val_paired_{metric}_{head}"] = val["paired"][head][metric]
    row.update({f"balancer_{key}": value for key, value in balancer_stats.items()})
    return row


class DVCLiveLogger:
    """DVCLive on rank 0, opened at the first epoch there is to write (so a run that fails
    before its first epoch leaves the previous run's plots alone). On resume the directory is
    rebuilt from the checkpoint's history, so it always matches the epochs that count (a
    killed epoch never leaves a stray step)."""

    def __init__(self, directory: Path, enabled: bool, history: list[dict[str, Any]]) -> None:
        self.directory, self.enabled, self.replay = directory, enabled, list(history)
        self.live = None

    def _open(self) -> None:
        try:
            from dvclive import Live
        except ImportError:  # a bare machine running stages without DVC (evaluation/study/local.py)
            log.warning("dvclive is not installed: no live metrics in %s (history.json has them all)",
                        self.directory)
            self.enabled = False
            return
        self.live = Live(dir=str(self.directory), resume=False, save_dvc_exp=False, dvcyaml=None)
        for row in self.replay:
            self._write(row)

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.live is None:
            self._open()
        if self.live is not None:
            self._write(row)

    def _write(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.live.log_metric(key, float(value))
        self.live.next_step()

    def close(self) -> None:
        """Ends the DVCLive run; a resumed run with no epoch left still rebuilds its directory."""
        if self.enabled and self.live is None and self.replay:
            self._open()
        if self.live is not None:
            self.live.end()


def improved(metric: float, best: float | None) -> bool:
    """Strictly better than the best so far; the first epoch always counts (even if undefined)."""
    if best is None:
        return True
    return not math.isnan(metric) and (math.isnan(best) or metric > best)


@dataclass
class Progress:
    """Where the epoch loop stands: what a resumed run continues from (saved in last.pt)."""

    epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    epochs_without_improvement: int = 0
    stopped: bool = False

    def record(self, row: dict[str, Any], score: float, patience: int) -> bool:
        """Add one epoch; True when it is the best so far (the best checkpoint is rewritten)."""
        self.epoch = int(row["epoch"])
        self.history.append(row)
        better = improved(score, self.best_metric)
        if better:
            self.best_metric, self.epochs_without_improvement = score, 0
        else:
            self.epochs_without_improvement += 1
        self.stopped = self.epochs_without_improvement >= patience
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "history": self.history, "best_metric": self.best_metric,
                "epochs_without_improvement": self.epochs_without_improvement, "stopped": self.stopped}


def try_resume(last_path: Path, best_path: Path, fingerprint: dict[str, str], engine: Engine) -> Progress:
    """The progress of a compatible interrupted run, loaded into `engine`; a fresh Progress when
    there is none, or when it was written under other settings, code or data (logged: it is
    not continued, it is replaced)."""
    if not last_path.exists():
        return Progress()
    state = load_checkpoint(last_path, map_location=engine.ctx.device)
    different = resume_mismatch(state.get("fingerprint"), fingerprint)
    if different is None and state.get("best_metric") is not None and not best_path.exists():
        different = "best checkpoint"
    if different is not None:
        log.warning("%s was written with a different %s: starting over", last_path.name,
                    {"best checkpoint": "run (its model.pt is missing)"}.get(different, different))
        return Progress()
    engine.load_state_dict(state)
    restore_rng_state(state["rng"])
    return Progress(**{key: state[key] for key in Progress().state_dict()})


# ---- the stage ----------------------------------------------------------------------------------
def fit(cfg: DictConfig, task: str, resume: bool = False, ctx: DistContext | None = None) -> FitResult:
    """Train `task` under cfg's regime and write runs/<task>/; returns that directory and the
    history (identical on every rank: the balancers' decisions come from all-reduced statistics)."""
    ctx = ctx or init_distributed(str(cfg.train.device))
    return build_regime(cfg).run(task, resume=resume, ctx=ctx)


def fit_epochs(regime: Regime, task: str, resume: bool, ctx: DistContext,
               run_dir: Path | None = None) -> FitResult:
    """The epoch loop every regime shares: train, validate, balance, keep the best, checkpoint.
    `run_dir` defaults to runs/<task>/ (a teacher of teachers@<task> writes elsewhere)."""
    cfg = regime.cfg
    run_dir = run_dir or paths.run_dir(cfg, task)
    last_path, best_path = run_dir / "last.pt", run_dir / "model.pt"
    configure_determinism(bool(cfg.train.get("deterministic", True)), ctx.device)
    configure_threads(cfg.train.get("threads", "auto"))
    seed = int(cfg.train.seed)
    if ctx.is_main and run_dir.is_dir():
        remove_stale_temporaries(run_dir)  # half-written checkpoints of a killed run

    setting = regime.dataset_setting()
    train_set = MultimodalDataset(task, "train", setting, cfg, train=True)
    val_set = MultimodalDataset(task, "val", setting, cfg, train=False)
    label_names = train_set.label_names
    # DP-SGD (privacy.enabled): patient-level Poisson batches; None when off. Checked here,
    # before any model is built, so an impossible budget or balancer stops in one line.
    privacy = PrivateTraining.from_config(cfg, train_set, balancing=regime.balancing(), objective=regime.objective,
                                          world_size=ctx.world_size)
    train_loader = make_loader(train_set, cfg, ctx, train=True, generator=torch.Generator()) if privacy is None \
        else privacy.loader(train_set, torch.Generator(), int(cfg.train.num_workers), ctx.device.type == "cuda")
    val_loader = make_loader(val_set, cfg, ctx, train=False, generator=torch.Generator())

    seed_everything(seed)
    channels_last = ctx.device.type == "cuda" and bool(cfg.train.channels_last) and privacy is None
    model = regime.build_model(len(label_names), train_set.ehr_features, channels_last)
    if privacy is not None:
        model = privacy.prepare_model(model)
    model = model.to(ctx.device)
    ctx.broadcast_parameters(model)
    engine = Engine.from_config(cfg, model, ctx, balancing=regime.balancing(),
                                objective=regime.objective_settings(task, train_set), privacy=privacy)
    fingerprint = run_fingerprint(cfg, input_files(train_set.paths) + regime.input_files(task))

    progress = Progress()
    if resume:
        progress = try_resume(last_path, best_path, fingerprint, engine)
        if progress.epoch >= 0:
            log.info("resuming after epoch %d of %d", progress.epoch, int(cfg.train.epochs))

    logger = DVCLiveLogger(run_dir / "dvclive", ctx.is_main, progress.history)
    metric_name = str(cfg.train.early_stopping.metric)
    patience = int(cfg.train.early_stopping.patience)
    stop_after = cfg.train.get("stop_after_epoch")
    try:
        for epoch in range(progress.epoch + 1, int(cfg.train.epochs)):
            if progress.stopped:
                break
            started = time.perf_counter()
            alpha, rates = engine.start_epoch(epoch)
            seed_epoch(train_loader, seed, epoch, ctx.rank)
            train_stats = engine.train_one_epoch(train_loader, epoch)
            _, val = engine.evaluate(val_loader)
            balancer_stats = engine.end_epoch(epoch, val, train_stats)
            row = history_row(epoch, alpha, rates, train_stats, val, balancer_stats, time.perf_counter() - started)
            if privacy is not None:
                row.update(privacy.log_stats())  # the epsilon spent so far
            score = float(val["all"][regime.monitored_head][metric_name])
            if progress.record(row, score, patience) and ctx.is_main:
                save_checkpoint(best_path, {"model": model.state_dict(), "epoch": epoch, "metric": metric_name,
                                            "head": regime.monitored_head, "score": score,
                                            "label_names": label_names,
                                            "config": OmegaConf.to_container(cfg, resolve=True)})
            log.info("epoch %d: val %s %s %.4f, lr %s%s%s", epoch, regime.monitored_head, metric_name, score,
                     " ".join(f"{group} {rate:.2e}" for group, rate in rates.items()),
                     "" if privacy is None else f", epsilon {row['privacy_epsilon']:.3f}",
                     " (early stop)" if progress.stopped else "")
            if ctx.is_main:
                logger.log(row)
                save_checkpoint(last_path, {**engine.state_dict(), **progress.state_dict(), "rng": rng_state(),
                                            "data_order": {"seed": seed, "next_epoch": epoch + 1},
                                            "label_names": label_names, "fingerprint": fingerprint,
                                            "config": OmegaConf.to_container(cfg, resolve=True)})
            ctx.barrier()
            if stop_after is not None and epoch + 1 >= int(stop_after):
                log.info("train.stop_after_epoch=%s: stopping here (resume with --resume)", stop_after)
                return FitResult(run_dir, progress.history)
    except TrainingDivergedError as err:
        raise TrainingDivergedError(f"{err}; stopped, the last good checkpoint is kept ({last_path})") from None
    finally:
        logger.close()

    write_outputs(cfg, task, run_dir, model, engine, label_names, progress.history)
    return FitResult(run_dir, progress.history)


def write_outputs(cfg: DictConfig, task: str, run_dir: Path, model: torch.nn.Module, engine: Engine,
                  label_names: list[str], history: list[dict[str, Any]]) -> None:
    """Predictions of the best model on every val and test stay (partial set), and history.json."""
    ctx = engine.ctx
    ctx.barrier()
    best = load_checkpoint(run_dir / "model.pt", map_location=ctx.device)
    model.load_state_dict(best["model"])
    splits = {}
    for split in ("val", "test"):
        dataset = MultimodalDataset(task, split, "partial", cfg, train=False)
        loader = make_loader(dataset, cfg, ctx, train=False, generator=torch.Generator())
        splits[split] = predict(model, loader, ctx, engine.autocast())
    if ctx.is_main:
        write_parquet(run_dir / "predictions.parquet", predictions_frame(splits, label_names))
        write_json(run_dir / "history.json", [{key: None if isinstance(value, float) and math.isnan(value)
                                               else value for key, value in row.items()} for row in history])


def main() -> None:
    args = get_args_parser().parse_args()
    cfg = task_stage_config(args)
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
