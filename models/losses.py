"""The multi-head loss of DESIGN section 6: a weighted sum of masked BCE losses.

The CXR head is undefined for a stay without an image, so its loss averages over the rows
that have one; the EHR and fused heads average over all rows. Masking uses `torch.where`
(not multiplication), so whatever placeholder a row without image carries (even inf)
contributes neither value nor gradient.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from models.names import HEADS, head_is_defined_without_image


def head_row_mask(head: str, has_cxr: torch.Tensor) -> torch.Tensor | None:
    """Which rows a head is defined on (None: all rows; the image head: rows with an image)."""
    return None if head_is_defined_without_image(head) else has_cxr.bool()


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE over labels and over the selected rows; exactly 0 (with a graph) if none is selected."""
    per_element = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    if rows is None:
        return per_element.mean()
    per_row = torch.where(rows[:, None], per_element, per_element.new_zeros(()))
    return per_row.sum() / (rows.sum() * per_element.shape[1]).clamp(min=1)


def masked_multihead_bce(logits: Mapping[str, torch.Tensor], labels: torch.Tensor, has_cxr: torch.Tensor,
                         weights: Mapping[str, float] | None = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total, {head: loss}) with total = sum_h weights[h] * loss_h over the heads in `logits`
    (ehr, cxr and fused for the multi-head model; the one head of a unimodal model).

    `weights` defaults to 1 per head (the MILES paper's unweighted sum); the per-head
    losses keep their graph so balancers that reweight heads can use them, detach them
    for logging.
    """
    heads = [head for head in HEADS if head in logits]
    weights = {head: 1.0 for head in heads} | dict(weights or {})
    per_head = {head: masked_bce(logits[head], labels, head_row_mask(head, has_cxr)) for head in heads}
    total = sum(float(weights[head]) * loss for head, loss in per_head.items())
    return total, per_head  # type: ignore[return-value]
