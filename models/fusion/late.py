"""Late fusion: the fused prediction is the average of the unimodal heads' logits."""

from __future__ import annotations

import torch
from torch import nn

from models.fusion.base import FusionModule, register_fusion


@register_fusion("late")
class LateFusion(FusionModule):
    """No parameters of its own: it returns logits, so its fused head is the identity."""

    missing_image_rule = "the fused logits are the EHR head's logits alone"
    reads_embeddings = False

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.fused_dim = 0  # returns logits, not a representation

    def build_fused_head(self, num_labels: int) -> nn.Module:
        return nn.Identity()

    def forward(self, ehr_emb: torch.Tensor, cxr_emb: torch.Tensor, has_cxr: torch.Tensor,
                unimodal_logits: dict[str, torch.Tensor]) -> torch.Tensor:
        ehr_logits, cxr_logits = unimodal_logits["ehr"], unimodal_logits["cxr"]
        return torch.where(has_cxr[:, None], (ehr_logits + cxr_logits) / 2, ehr_logits)
