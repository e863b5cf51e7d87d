"""teachers@<task>: train MIND's unimodal teacher ensembles once; write their logits for every stay.

    python -m training.teachers --task in_hospital_mortality [key=value ...]

Each enabled member of `teachers.members` (configs/teachers/default.yaml) is one encoder and
its head trained alone by the unimodal regime (training/regimes/unimodal.py) on every training
stay that has its modality (EHR: all stays; CXR: the stays with an image), with the teachers'
own training settings (`teachers.train`) and its own seed, into runs/teachers/<task>/<member>/.
Then every member's best model predicts logits for every train, val and test stay, written to
runs/teachers/<task>/logits.parquet (training/teacher_logits.py has the contract), plus
teachers.json (members, parameter counts, validation metric, seconds).

The stage reads only the teacher settings, the data settings and the device settings, never
the student's (`regime.*` except its name, `model`, `fusion`, `balancing`, the rest of
`train`), so DVC reruns it only when those change: a student configuration reuses the
teachers. A regime that uses no teachers (`uses_teachers` is False: every regime but
`distill`) gets teachers.json saying so and no training, so the default `dvc repro` pays
nothing for this stage.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from data_prep import paths
from data_prep.config import run_stage, task_stage_config, task_stage_parser
from data_prep.dataset import MultimodalDataset, loader_for
from data_prep.errors import PipelineInputError
from data_prep.io import write_json
from models.names import IMAGE_HEAD, MODALITIES
from training.checkpoint import load_checkpoint
from training.distributed import init_distributed, shutdown
from training.predictions import move_batch
from training.regimes import REGIMES, build_regime
from training.teacher_logits import logits_frame, write_teacher_logits

log = logging.getLogger(__name__)

EXECUTION_KEYS = ("device", "amp", "channels_last", "num_workers", "threads", "deterministic", "runs_dir")
"""train.* settings the teachers share with the student: where and how to run, not what to learn
(dvc.yaml lists exactly these for teachers@<task>)."""
STAGE_PARAMS = ("data.cxr.crop_size", "data.cxr.image_size", "data.cxr.augment", "data.cxr.normalize",
                "data.interim_dir", "data.processed_dir", "regime.name", "teachers",
                *(f"train.{key}" for key in EXECUTION_KEYS))
"""The params of teachers@<task> in dvc.yaml (a test checks they agree): the stage reads only
these, through `stage_view`, so DVC's record of them is the whole truth about its outputs."""
SPLITS = ("train", "val", "test")


def stage_view(cfg: DictConfig) -> DictConfig:
    """The configuration reduced to STAGE_PARAMS: what the stage may read."""
    view = OmegaConf.create({})
    for key in STAGE_PARAMS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            OmegaConf.update(view, key, value, merge=False)
    return view


def enabled_members(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """The enabled members, validated: a known modality, a name usable as a folder and column."""
    members = OmegaConf.to_container(cfg.teachers.members, resolve=True)
    chosen = {}
    for name, member in members.items():  # type: ignore[union-attr]
        if not member.get("enabled", True):
            continue
        if "/" in name or not name:
            raise PipelineInputError(f"teachers.members.{name}: a member name must be a plain folder name")
        if member.get("modality") not in MODALITIES:
            raise PipelineInputError(f"teachers.members.{name}.modality={member.get('modality')!r}: "
                                     f"expected one of {', '.join(MODALITIES)}")
        chosen[name] = member
    return chosen


def member_config(cfg: DictConfig, member: dict[str, Any]) -> DictConfig:
    """The configuration one member trains under: the data and task settings, the member's
    encoder, the unimodal regime, no balancer, and `teachers.train` with the member's seed.
    Nothing of the student's settings enters it, so neither its results nor its resume
    fingerprint depend on them."""
    modality = member["modality"]
    cfg = stage_view(cfg)
    train = {**{key: cfg.train[key] for key in EXECUTION_KEYS if key in cfg.train},
             **OmegaConf.to_container(cfg.teachers.train, resolve=True),
             "seed": int(member["seed"]), "loss_weights": {head: 1.0 for head in (*MODALITIES, "fused")},
             "setting": "partial", "stop_after_epoch": None}
    return OmegaConf.create({
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "model": {modality: member["encoder"], "embed_dim": int(member["embed_dim"])},
        "regime": {"name": "unimodal", "objective": "supervised", "modality": modality},
        "balancing": {"name": "none"}, "train": train})


@torch.no_grad()
def member_logits(model: torch.nn.Module, dataset: MultimodalDataset, batch_size: int,
                  device: torch.device) -> np.ndarray:
    """[stays, labels] logits of the model's one head in the dataset's order; NaN for a CXR
    member on a stay without an image (its head is undefined there)."""
    model.eval()
    head = model.head_names[0]
    parts = []
    for batch in loader_for(dataset, batch_size=batch_size, num_workers=0, train=False):
        batch = move_batch(batch, device)
        logits = model(batch)[head].float().cpu().numpy()
        if head == IMAGE_HEAD:
            logits[~batch["has_cxr"].cpu().numpy().astype(bool)] = np.nan
        parts.append(logits)
    return np.concatenate(parts) if parts else np.empty((0, len(dataset.label_names)), np.float32)


def n_parameters(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def train_teachers(cfg: DictConfig, task: str, resume: bool = True) -> dict[str, Any]:
    """Train every enabled member (a finished member with the same settings is reused by its
    resume fingerprint), write logits.parquet and teachers.json; returns the summary."""
    from training.train import fit_epochs

    cfg = stage_view(cfg)
    out = paths.teachers_dir(cfg, task)
    regime_name = str((cfg.get("regime") or {}).get("name", "supervised"))
    if not REGIMES.get(regime_name).uses_teachers:
        summary = {"trained": False, "reason": f"regime={regime_name} uses no teachers"}
        write_json(out / "teachers.json", summary)
        log.info("regime=%s uses no teachers: nothing trained", regime_name)
        return summary
    members = enabled_members(cfg)
    if not {m["modality"] for m in members.values()} >= set(MODALITIES):
        raise PipelineInputError("teachers.members: enable at least one member per modality "
                                 f"({', '.join(MODALITIES)}); enabled: {', '.join(members) or 'none'}")
    ctx = init_distributed(str(cfg.train.device))
    summary: dict[str, Any] = {"trained": True, "members": {}}
    logits: dict[str, np.ndarray] = {}
    reference = None
    try:
        for name, member in members.items():
            started = time.perf_counter()
            member_cfg = member_config(cfg, member)
            regime = build_regime(member_cfg)
            log.info("teacher %s (%s, %s)", name, member["modality"], member["encoder"]["name"])
            result = fit_epochs(regime, task, resume=resume, ctx=ctx, run_dir=out / name)
            datasets = {split: MultimodalDataset(task, split, "partial", member_cfg, train=False) for split in SPLITS}
            model = regime.build_model(len(datasets["train"].label_names), datasets["train"].ehr_features,
                                       channels_last=False).to(ctx.device)
            best = load_checkpoint(result.run_dir / "model.pt", map_location=ctx.device)
            model.load_state_dict(best["model"])
            batch = 2 * int(member_cfg.train.batch_size)
            logits[name] = np.concatenate([member_logits(model, datasets[s], batch, ctx.device) for s in SPLITS])
            if reference is None:
                reference = datasets
            summary["members"][name] = {
                "modality": member["modality"], "encoder": member["encoder"]["name"],
                "parameters": n_parameters(model), "best_epoch": int(best["epoch"]),
                f"val_{best['metric']}": float(best["score"]), "seconds": round(time.perf_counter() - started, 1)}
    finally:
        shutdown(ctx)
    assert reference is not None
    frame = logits_frame(
        np.concatenate([reference[s].stay_ids for s in SPLITS]),
        np.concatenate([np.full(len(reference[s]), s, dtype=object) for s in SPLITS]),
        np.concatenate([reference[s].image_rows >= 0 for s in SPLITS]),
        np.concatenate([reference[s].labels for s in SPLITS]), reference["train"].label_names, logits)
    write_teacher_logits(paths.teacher_logits_path(cfg, task), frame,
                         {name: m["modality"] for name, m in members.items()}, reference["train"].label_names)
    write_json(out / "teachers.json", summary)
    return summary


def main() -> None:
    args = task_stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = task_stage_config(args)
    train_teachers(cfg, args.task)


if __name__ == "__main__":
    run_stage(main)


__all__ = ["EXECUTION_KEYS", "enabled_members", "main", "member_config", "train_teachers"]
