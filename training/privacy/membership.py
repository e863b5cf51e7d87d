"""membership@<task>: what the membership-inference audit attacks, the model's predictions on
its own training patients (members) and on the test patients (non-members), plus the same
predictions from reference models that saw neither.

    python -m training.privacy.membership --task in_hospital_mortality [key=value ...]

The target is runs/<task>/model.pt, rebuilt from the configuration saved in it (with the same
DP substitutions when it was trained privately). Members are the training stays of the
regime's setting, non-members the test stays of the same setting. The reference models
(`privacy.audit.reference_models`) are our documented cheaper variant of the calibrated
attacks (offline difficulty calibration, Watson et al., ICLR 2022; LiRA's offline variant,
Carlini et al., IEEE S&P 2022): same regime, model and schedule as the target, non-private,
no balancer, a fixed number of epochs, trained on the *validation* patients, so that they are
OUT models for every candidate, members and non-members alike; each candidate's loss under them
estimates how hard that stay is regardless of membership. Output:
runs/<task>/audit/membership.parquet, the predictions contract (training/predictions.py) with
splits train/test and a `model` column (target, reference_0, ...). It is an internal run
artifact (stay and subject ids included, as in predictions.parquet); the audit's report holds
aggregates only.
"""

from __future__ import annotations

import logging

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from data_prep import paths
from data_prep.config import run_stage, task_stage_config, task_stage_parser
from data_prep.dataset import MultimodalDataset
from data_prep.errors import StaleInputError
from data_prep.io import write_parquet
from training.checkpoint import load_checkpoint, seed_everything
from training.distributed import DistContext, init_distributed, shutdown
from training.engine import Engine, configure_determinism
from training.predictions import PredictionSet, predict, predictions_frame
from training.privacy.compat import make_private_compatible
from training.privacy.settings import PrivacySettings
from training.regimes import Regime, build_regime
from training.train import make_loader, seed_epoch

log = logging.getLogger(__name__)
SPLITS = {"train": "members", "test": "non-members"}


def candidate_predictions(model: torch.nn.Module, regime: Regime, task: str, ctx: DistContext) -> dict[str, PredictionSet]:
    """Predictions on the members (train split) and non-members (test split), same setting."""
    out = {}
    for split in SPLITS:
        dataset = MultimodalDataset(task, split, regime.dataset_setting(), regime.cfg, train=False)
        loader = make_loader(dataset, regime.cfg, ctx, train=False, generator=torch.Generator())
        out[split] = predict(model, loader, ctx)
    return out


def load_target(run_dir_cfg: DictConfig, task: str, ctx: DistContext) -> tuple[torch.nn.Module, Regime, list[str]]:
    """The trained model of runs/<task>/model.pt, rebuilt from the configuration saved in it."""
    best_path = paths.run_dir(run_dir_cfg, task) / "model.pt"
    if not best_path.exists():
        raise StaleInputError(f"{best_path} not found: run `dvc repro train@{task}`")
    best = load_checkpoint(best_path, map_location=ctx.device)
    run_cfg = OmegaConf.create(best["config"])
    regime = build_regime(run_cfg)
    train_set = MultimodalDataset(task, "train", regime.dataset_setting(), run_cfg, train=False)
    model = regime.build_model(len(best["label_names"]), train_set.ehr_features, channels_last=False)
    if PrivacySettings.from_config(run_cfg).enabled:
        model, _ = make_private_compatible(model)
    model.load_state_dict(best["model"])
    return model.to(ctx.device), regime, list(best["label_names"])


def train_reference(regime: Regime, task: str, index: int, epochs: int, ctx: DistContext) -> torch.nn.Module:
    """A non-private model of the target's regime and settings trained on the validation patients."""
    seed = int(regime.cfg.train.seed) + 7919 * (index + 1)
    cfg = OmegaConf.merge(regime.cfg, {"privacy": {"enabled": False}, "train": {"seed": seed, "epochs": epochs}})
    reference = build_regime(cfg)
    dataset = MultimodalDataset(task, "val", reference.dataset_setting(), cfg, train=True)
    loader = make_loader(dataset, cfg, ctx, train=True, generator=torch.Generator())
    seed_everything(seed)
    model = reference.build_model(len(dataset.label_names), dataset.ehr_features, channels_last=False).to(ctx.device)
    engine = Engine.from_config(cfg, model, ctx, balancing={"name": "none"}, objective=reference.objective)
    for epoch in range(epochs):
        engine.start_epoch(epoch)
        seed_epoch(loader, seed, epoch, ctx.rank)
        engine.train_one_epoch(loader, epoch)
    return model


def membership_frame(cfg: DictConfig, task: str, ctx: DistContext) -> pd.DataFrame:
    """The target's and the reference models' predictions on members and non-members."""
    model, regime, label_names = load_target(cfg, task, ctx)
    configure_determinism(bool(regime.cfg.train.get("deterministic", True)), ctx.device)
    frames = [predictions_frame(candidate_predictions(model, regime, task, ctx), label_names).assign(model="target")]
    audit = cfg.privacy.audit
    epochs = int(audit.reference_epochs or regime.cfg.train.epochs)
    for index in range(int(audit.reference_models)):
        log.info("audit: reference model %d of %d on the validation patients (%d epochs)", index + 1,
                 int(audit.reference_models), epochs)
        reference = train_reference(regime, task, index, epochs, ctx)
        frames.append(predictions_frame(candidate_predictions(reference, regime, task, ctx), label_names)
                      .assign(model=f"reference_{index}"))
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    args = task_stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = task_stage_config(args)
    ctx = init_distributed(str(cfg.train.device))
    try:
        frame = membership_frame(cfg, args.task, ctx)
        if ctx.is_main:
            paths.membership_path(cfg, args.task).parent.mkdir(parents=True, exist_ok=True)
            write_parquet(paths.membership_path(cfg, args.task), frame)
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    run_stage(main)
