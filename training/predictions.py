"""Predicting a split on every rank, gathering without duplicates, and the predictions file.

DistributedSampler pads the last rank's share by repeating stays; gathering (stay_id,
probabilities) from all ranks and keeping each stay_id once gives exactly the split, in
stay_id order, whatever the number of ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.names import EHR_HEAD, FUSED_HEAD, ROUTED_HEAD, head_is_defined_without_image
from training.distributed import DistContext


@dataclass
class PredictionSet:
    """One split's predictions, one row per stay, sorted by stay_id; `probs` has one entry per
    head of the model that made them (ehr, cxr, fused; or a unimodal model's one head)."""

    stay_id: np.ndarray
    subject_id: np.ndarray
    has_cxr: np.ndarray
    labels: np.ndarray
    probs: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.stay_id)


def move_batch(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Tensors to the device; EHR lengths stay on the CPU (sequence packing needs them there)."""
    non_blocking = device.type == "cuda"
    return {key: value if key in ("ehr_lengths", "stay_id", "subject_id")
            else value.to(device, non_blocking=non_blocking) for key, value in batch.items()}


@torch.no_grad()
def predict(model: torch.nn.Module, loader: Iterable[dict[str, Any]], ctx: DistContext,
            autocast: AbstractContextManager | None = None) -> PredictionSet:
    """Probabilities of every head for this rank's share of `loader`, gathered over ranks."""
    was_training = model.training
    model.eval()
    heads = tuple(model.head_names)
    parts: dict[str, list[np.ndarray]] = {"stay_id": [], "subject_id": [], "has_cxr": [], "labels": [],
                                          **{f"p_{head}": [] for head in heads}}
    for batch in loader:
        device_batch = move_batch(batch, ctx.device)
        with autocast or nullcontext():
            logits = model(device_batch)
        for head in heads:
            parts[f"p_{head}"].append(torch.sigmoid(logits[head].float()).cpu().numpy())
        for key in ("stay_id", "subject_id", "has_cxr", "labels"):
            parts[key].append(batch[key].numpy())
    model.train(was_training)
    local = {key: np.concatenate(value) if value else np.empty((0,)) for key, value in parts.items()}
    merged = {key: np.concatenate([part[key] for part in ctx.all_gather_objects(local)
                                   if len(part[key])]) for key in local}
    _, first = np.unique(merged["stay_id"], return_index=True)  # sorted by stay_id, duplicates dropped
    return PredictionSet(stay_id=merged["stay_id"][first].astype(np.int64),
                         subject_id=merged["subject_id"][first].astype(np.int64),
                         has_cxr=merged["has_cxr"][first].astype(bool),
                         labels=merged["labels"][first].astype(np.float32),
                         probs={head: merged[f"p_{head}"][first].astype(np.float32) for head in heads})


def routed(probs: Mapping[str, np.ndarray], has_cxr: np.ndarray) -> np.ndarray | None:
    """The routed prediction (models/names.py ROUTED_HEAD): the fused head on stays with an
    image, the EHR head on stays without; a model with one head routes to it. None for a model
    that cannot serve a stay without an image (a CXR-only model): routing would have to impute.
    """
    if FUSED_HEAD in probs:
        return np.where(np.asarray(has_cxr, dtype=bool)[:, None], probs[FUSED_HEAD], probs[EHR_HEAD])
    return probs[EHR_HEAD] if set(probs) == {EHR_HEAD} else None


def predictions_frame(splits: Mapping[str, PredictionSet], label_names: list[str]) -> pd.DataFrame:
    """The contract of runs/<task>/predictions.parquet (docs/architecture.md): the heads'
    probabilities and, for every model that can serve a stay without an image, the routed one."""
    frames = []
    for split, preds in splits.items():
        columns: dict[str, object] = {"subject_id": preds.subject_id, "stay_id": preds.stay_id,
                                      "split": np.full(len(preds), split, dtype=object),
                                      "has_cxr": preds.has_cxr}
        for k, name in enumerate(label_names):
            columns[f"y_{name}"] = preds.labels[:, k].astype(np.float32)
        route = routed(preds.probs, preds.has_cxr)
        for head, probs in {**preds.probs, **({ROUTED_HEAD: route} if route is not None else {})}.items():
            for k, name in enumerate(label_names):
                values = pd.array(probs[:, k], dtype="Float32")
                if not head_is_defined_without_image(head):
                    values[~preds.has_cxr] = pd.NA
                columns[f"p_{head}_{name}"] = values
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)
