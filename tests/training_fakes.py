"""Test doubles for the training tests: contract-format stage inputs written to a tmp dir.

`write_task_inputs` writes exactly the files docs/architecture.md specifies for one task
(labels.parquet, pairs parquet, EHR values.npy/index.parquet, CXR images.npy/index.parquet),
with a planted signal in both modalities, so the real `MultimodalDataset` reads them and the
real model learns something in a few steps. `tiny_config` is params.yaml shrunk to seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parent.parent
TASK = "phenotyping"
LABELS = ("acute_renal_failure", "sepsis", "shock")


def write_task_inputs(root: Path, n_stays: int = 96, image_size: int = 40, seed: int = 0,
                      cxr_fraction: float = 0.75, task: str = TASK,
                      hours: tuple[int, int] = (3, 9)) -> tuple[Path, Path]:
    """Write one task's inputs under root; returns (interim_dir, processed_dir)."""
    rng = np.random.default_rng(seed)
    interim, processed = root / "interim", root / "processed"
    stay_ids = np.arange(30_000_000, 30_000_000 + n_stays, dtype=np.int64)
    subject_ids = 10_000_000 + np.arange(n_stays, dtype=np.int64) // 2
    position = np.arange(n_stays) % 10
    split = np.where(position < 6, "train", np.where(position < 8, "val", "test"))
    ehr_signal = rng.normal(size=n_stays)
    cxr_signal = rng.normal(size=n_stays)
    has_cxr = rng.random(n_stays) < cxr_fraction
    logits = np.stack([2 * ehr_signal, 2 * cxr_signal, ehr_signal + cxr_signal], axis=1)
    labels = (logits + rng.normal(scale=0.5, size=logits.shape) > 0).astype(np.float32)

    intime = pd.Timestamp("2150-01-01") + pd.to_timedelta(np.arange(n_stays), unit="D")
    frame = pd.DataFrame({"subject_id": subject_ids, "hadm_id": stay_ids + 1_000_000, "stay_id": stay_ids,
                          "split": split, "intime": intime, "window_end": intime + pd.Timedelta(hours=48),
                          "sex": np.where(np.arange(n_stays) % 2, "M", "F"), "age": 60.0})
    for k, name in enumerate(LABELS[:labels.shape[1]]):
        frame[name] = labels[:, k]
    (interim / "tasks" / task).mkdir(parents=True, exist_ok=True)
    frame.to_parquet(interim / "tasks" / task / "labels.parquet", index=False)

    dicom = np.array([f"d{k:06d}" for k in range(n_stays)], dtype=object)
    pairs = pd.DataFrame({"stay_id": stay_ids, "subject_id": subject_ids, "split": split, "has_cxr": has_cxr,
                          "dicom_id": pd.array(np.where(has_cxr, dicom, None), dtype="string")})
    (interim / "cxr").mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(interim / "cxr" / f"pairs_{task}.parquet", index=False)

    lengths = rng.integers(*hours, size=n_stays)
    values = rng.normal(scale=0.5, size=(int(lengths.sum()), 76)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for stay, (offset, length) in enumerate(zip(offsets, lengths, strict=True)):
        values[offset:offset + length, :8] += ehr_signal[stay]
    ehr_dir = processed / "ehr" / task
    ehr_dir.mkdir(parents=True, exist_ok=True)
    np.save(ehr_dir / "values.npy", values.astype(np.float16))
    pd.DataFrame({"stay_id": stay_ids, "offset": offsets.astype(np.int64), "length": lengths.astype(np.int64),
                  "split": split}).to_parquet(ehr_dir / "index.parquet", index=False)

    cache = processed / "cxr"
    cache.mkdir(parents=True, exist_ok=True)
    cached = np.flatnonzero(has_cxr)
    images = rng.integers(60, 120, size=(len(cached), image_size, image_size)).astype(np.float32)
    images[:, image_size // 4: 3 * image_size // 4, image_size // 4: 3 * image_size // 4] += \
        40 * cxr_signal[cached, None, None]
    np.save(cache / "images.npy", np.clip(images, 0, 255).astype(np.uint8))
    pd.DataFrame({"dicom_id": dicom[cached].astype(str), "row": np.arange(len(cached), dtype=np.int64)}) \
        .to_parquet(cache / "index.parquet", index=False)
    pd.DataFrame({"dicom_id": [], "image_relpath": [], "reason": []}).to_csv(cache / "exclusions.csv", index=False)
    (cache / "summary.json").write_text(json.dumps({"image_size": image_size}))
    return interim, processed


def tiny_config(root: Path, balancing: str = "none", epochs: int = 2, **train: object) -> DictConfig:
    """params.yaml with tiny model/data settings and paths under root."""
    from data_prep.params import compose

    cfg = OmegaConf.create(compose([f"balancing={balancing}"]))
    interim, processed = write_task_inputs(root) if not (root / "interim").exists() else \
        (root / "interim", root / "processed")
    tiny = {"data": {"interim_dir": str(interim), "processed_dir": str(processed),
                     "cxr": {"image_size": 40, "crop_size": 32}},
            "model": {"ehr": {"hidden_size": 16, "num_layers": 1}, "cxr": {"name": "resnet18"}, "embed_dim": 16},
            "fusion": {"hidden_size": 16},
            "train": {"epochs": epochs, "batch_size": 16, "runs_dir": str(root / "runs"), "device": "cpu",
                      "num_workers": 0, **train}}
    return OmegaConf.merge(cfg, OmegaConf.create(tiny))


class ToyModel(torch.nn.Module):
    """A contract-conforming stand-in for balancer rule tests: linear encoders, linear heads."""

    head_names = ("ehr", "cxr", "fused")

    def __init__(self, ehr_features: int = 4, cxr_features: int = 4, embed_dim: int = 3, num_labels: int = 2) -> None:
        super().__init__()
        self.encoders = torch.nn.ModuleDict({"ehr": torch.nn.Linear(ehr_features, embed_dim),
                                             "cxr": torch.nn.Linear(cxr_features, embed_dim)})
        self.fusion = torch.nn.Linear(2 * embed_dim, embed_dim)
        self.heads = torch.nn.ModuleDict({m: torch.nn.Linear(embed_dim, num_labels) for m in ("ehr", "cxr", "fused")})

    def embed(self, batch):
        return {"ehr": self.encoders["ehr"](batch["ehr"]),
                "cxr": self.encoders["cxr"](batch["image"]) * batch["has_cxr"][:, None]}

    def forward_from_embeddings(self, embeddings, has_cxr):
        fused = torch.relu(self.fusion(torch.cat([embeddings["ehr"], embeddings["cxr"]], dim=1)))
        return {"ehr": self.heads["ehr"](embeddings["ehr"]), "cxr": self.heads["cxr"](embeddings["cxr"]),
                "fused": self.heads["fused"](fused)}

    def forward(self, batch):
        return self.forward_from_embeddings(self.embed(batch), batch["has_cxr"])

    def modality_modules(self, unimodal_heads_in: str = "encoder"):
        groups = {"ehr": [self.encoders["ehr"]], "cxr": [self.encoders["cxr"]],
                  "shared": [self.fusion, self.heads["fused"]]}
        for m in ("ehr", "cxr"):
            groups[m if unimodal_heads_in == "encoder" else "shared"].append(self.heads[m])
        return groups

    def modality_parameters(self, unimodal_heads_in: str = "encoder"):
        return {g: [p for module in mods for p in module.parameters()]
                for g, mods in self.modality_modules(unimodal_heads_in).items()}


def toy_batch(n: int = 8, seed: int = 0, num_labels: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"ehr": torch.randn(n, 4, generator=generator), "image": torch.randn(n, 4, generator=generator),
            "has_cxr": torch.ones(n, dtype=torch.bool),
            "labels": (torch.rand(n, num_labels, generator=generator) > 0.5).float()}


def balanced_step(balancer, batch, objective=None, zero_grad: bool = True):
    """The engine's step order on a toy model, without the optimizer (training/engine.py):
    forward, after_forward, loss with the balancer's head weights, adjust_loss, backward.
    Returns (step, loss); the caller runs `balancer.after_backward(step)` when it wants to
    see the gradients before and after modulation."""
    from training.objectives import build_objective

    objective = objective or build_objective("supervised", balancer.model)
    step = objective.forward(batch)
    balancer.after_forward(step)
    loss = balancer.adjust_loss(step, objective.loss(step, balancer.head_weights()))
    if zero_grad:
        balancer.model.zero_grad()
    balancer.backward(step, loss, lambda x: x)
    return step, loss


def toy_teachers(stay_ids, num_labels: int = 2, seed: int = 0, missing_image=()):
    """A TeacherLogits table over `stay_ids`: two EHR and two CXR members with random logits,
    the CXR members' logits NaN on the stays in `missing_image` (no image)."""
    from training.teacher_logits import TeacherLogits

    stay_ids = np.asarray(stay_ids, dtype=np.int64)
    rng = np.random.default_rng(seed)
    members = {"ehr_a": "ehr", "ehr_b": "ehr", "cxr_a": "cxr", "cxr_b": "cxr"}
    has_cxr = ~np.isin(stay_ids, np.asarray(list(missing_image), dtype=np.int64))
    logits = {m: rng.normal(size=(len(stay_ids), num_labels)).astype(np.float32) for m in members}
    for m, modality in members.items():
        if modality == "cxr":
            logits[m][~has_cxr] = np.nan
    return TeacherLogits(stay_ids=stay_ids, split=np.full(len(stay_ids), "train"), has_cxr=has_cxr,
                         labels=np.zeros((len(stay_ids), num_labels), np.float32),
                         label_names=[f"label{k}" for k in range(num_labels)], members=members, logits=logits)


def toy_objective_settings(name: str, batch: dict[str, torch.Tensor]) -> dict[str, object]:
    """Settings an objective needs beyond its name on toy batches (the distill objective: teacher
    logits for the batch's stays, which gets stay_ids if it has none)."""
    if name != "distill":
        return {"name": name}
    batch.setdefault("stay_id", torch.arange(len(batch["labels"]), dtype=torch.int64))
    return {"name": name, "teachers": toy_teachers(batch["stay_id"].numpy(), batch["labels"].shape[1])}
