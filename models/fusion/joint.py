"""Joint fusion: concatenate the two embeddings, then an MLP (MedFuse's "joint" baseline)."""

from __future__ import annotations

import torch
from torch import nn

from models.fusion.base import FusionModule, LearnedToken, masked_missing, register_fusion


@register_fusion("joint")
class JointFusion(FusionModule):
    """[ehr ; cxr] -> Linear -> ReLU -> Dropout; `hidden_size: 0` keeps the bare concatenation
    (MedFuse feeds the concatenation straight into its linear classifier)."""

    missing_image_rule = "a learned missing-image token replaces the CXR embedding"

    def __init__(self, embed_dim: int, hidden_size: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        self.missing_token = LearnedToken(embed_dim)
        if hidden_size:
            self.mlp: nn.Module = nn.Sequential(nn.Linear(2 * embed_dim, hidden_size), nn.ReLU(),
                                                nn.Dropout(dropout))
            self.fused_dim = hidden_size
        else:
            self.mlp = nn.Dropout(dropout)
            self.fused_dim = 2 * embed_dim

    def forward(self, ehr_emb: torch.Tensor, cxr_emb: torch.Tensor, has_cxr: torch.Tensor,
                unimodal_logits: dict[str, torch.Tensor]) -> torch.Tensor:
        cxr_emb = masked_missing(cxr_emb, has_cxr, self.missing_token(cxr_emb))
        return self.mlp(torch.cat([ehr_emb, cxr_emb], dim=1))
