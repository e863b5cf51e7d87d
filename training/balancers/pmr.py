"""PMR, prototypical modal rebalance (Fan et al., CVPR 2023; official code fanyunfeng-bit/Modal-Imbalance-PMR).

Prototypes, for binary multi-label outputs: for each modality m, label l and value c in
{0, 1}, the mean embedding of the training stays with y_l = c (CXR: stays with an image).
They are accumulated during epoch e and used in epoch e + 1 (optionally blended with the
previous ones by `momentum`), so no extra pass over the data is needed; epoch 0 has no
prototypes and no extra term. Prototype logit of label l: d(z, P[l, 0]) - d(z, P[l, 1]),
i.e. a two-class softmax over negative Euclidean distances. Each step, s^p_m sums the
prototype probability of the true value over the paired stays (all-reduced);
rho = s^p_ehr / s^p_cxr, and alpha * BCE(prototype logits of the weaker modality) is added
to the loss during the modulation epochs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from models.names import MODALITIES
from training.balancers.base import Balancer, register_balancer


def prototype_logits(embeddings: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """[B, D] embeddings, [L, 2, D] prototypes -> [B, L] logits of y_l = 1."""
    distance = torch.cdist(embeddings.float(), prototypes.float().reshape(-1, prototypes.shape[-1]))
    distance = distance.reshape(embeddings.shape[0], prototypes.shape[0], 2)
    return distance[..., 0] - distance[..., 1]


def weaker_modality(s_ehr: float, s_cxr: float) -> str | None:
    """The modality PMR pushes: rho = s_ehr / s_cxr > 1 means EHR dominates, so CXR is pushed."""
    if s_ehr <= 0 or s_cxr <= 0 or s_ehr == s_cxr:
        return None
    return "cxr" if s_ehr / s_cxr > 1 else "ehr"


@register_balancer("pmr")
class PMR(Balancer):
    state_attributes = ("prototypes", "class_sums", "class_counts", "pushed_steps", "steps")

    def __init__(self, *args: Any, alpha: float = 1.0, momentum: float = 0.0, modulation_start: int = 0,
                 modulation_end: int = 50, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alpha, self.momentum = float(alpha), float(momentum)
        self.window = (int(modulation_start), int(modulation_end))
        self.prototypes: dict[str, torch.Tensor] | None = None
        self.class_sums: dict[str, torch.Tensor] | None = None
        self.class_counts: dict[str, torch.Tensor] | None = None
        self.pushed_steps = {m: 0 for m in MODALITIES}
        self.steps = 0
        self._embeddings: dict[str, torch.Tensor] | None = None

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.class_sums = self.class_counts = None
        self.pushed_steps, self.steps = {m: 0 for m in MODALITIES}, 0

    def after_forward(self, step) -> None:
        self._embeddings = step.embeddings

    def _accumulate(self, batch: Mapping[str, torch.Tensor]) -> None:
        labels, paired = batch["labels"], batch["has_cxr"].bool()
        onehot = torch.stack([1 - labels, labels], dim=-1)  # [B, L, 2]
        if self.class_sums is None:
            shape = (labels.shape[1], 2, self._embeddings["ehr"].shape[1])
            self.class_sums = {m: labels.new_zeros(shape, dtype=torch.float64) for m in MODALITIES}
            self.class_counts = {m: labels.new_zeros(shape[:2], dtype=torch.float64) for m in MODALITIES}
        for modality in MODALITIES:
            rows = paired if modality == "cxr" else torch.ones_like(paired)
            z, w = self._embeddings[modality].detach().float()[rows], onehot[rows].double()
            self.class_sums[modality] += torch.einsum("blc,bd->lcd", w, z.double())
            self.class_counts[modality] += w.sum(dim=0)

    def adjust_loss(self, step, loss):
        """Accumulates this epoch's prototypes; adds alpha * the weaker modality's prototype BCE."""
        batch = step.batch
        self._accumulate(batch)
        if self.prototypes is None or not self.window[0] <= self.epoch <= self.window[1]:
            return loss
        paired = batch["has_cxr"].bool()
        labels = batch["labels"][paired]
        logits = {m: prototype_logits(self._embeddings[m][paired], self.prototypes[m]) for m in MODALITIES}
        with torch.no_grad():
            probs = {m: torch.sigmoid(logits[m]) for m in MODALITIES}
            sums = torch.stack([torch.where(labels > 0.5, probs[m], 1 - probs[m]).mean(dim=1).sum()
                                for m in MODALITIES]).double()
            s_ehr, s_cxr = self.ctx.all_reduce_sum(sums).tolist()
        self.steps += 1
        weak = weaker_modality(s_ehr, s_cxr)
        if weak is None or labels.shape[0] == 0:
            return loss
        self.pushed_steps[weak] += 1
        prototype_loss = F.binary_cross_entropy_with_logits(logits[weak], labels)
        return loss.plus("prototype", self.alpha * prototype_loss)

    def on_epoch_end(self, epoch, val_metrics, train_stats) -> dict[str, float]:
        if self.class_sums is not None:
            fresh = {}
            for modality in MODALITIES:
                sums = self.ctx.all_reduce_sum(self.class_sums[modality])
                counts = self.ctx.all_reduce_sum(self.class_counts[modality])
                means = sums / counts.clamp(min=1)[..., None]
                if self.prototypes is not None and self.momentum:
                    means = self.momentum * self.prototypes[modality].double() + (1 - self.momentum) * means
                fresh[modality] = means.float()
            self.prototypes = fresh
        total = max(self.steps, 1)
        self.stats = {f"pushed_fraction_{m}": self.pushed_steps[m] / total for m in MODALITIES}
        return dict(self.multipliers)
