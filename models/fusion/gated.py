"""Gated fusion after the Gated Multimodal Unit (Arevalo et al., ICLR workshop 2017).

Each modality is mapped to a candidate h_m = tanh(W_m e_m); per-sample, per-feature
sigmoid gates g_m = sigmoid(V_m [e_ehr ; e_cxr]) weigh the candidates. The gates are
renormalized to sum to one, so with the image missing (its gate forced to 0) the fused
representation is exactly the EHR candidate rather than a shrunken one.
"""

from __future__ import annotations

import torch
from torch import nn

from models.fusion.base import FusionModule, register_fusion


@register_fusion("gated")
class GatedFusion(FusionModule):
    missing_image_rule = "the CXR gate is forced to 0 and the gates renormalized: the EHR candidate alone"

    def __init__(self, embed_dim: int, dropout: float = 0.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.candidates = nn.ModuleDict({"ehr": nn.Linear(embed_dim, embed_dim),
                                         "cxr": nn.Linear(embed_dim, embed_dim)})
        self.gates = nn.Linear(2 * embed_dim, 2 * embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.eps = eps
        self.fused_dim = embed_dim

    def gate_values(self, ehr_emb: torch.Tensor, cxr_emb: torch.Tensor,
                    has_cxr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Renormalized gates (ehr, cxr), each [B, D]; exposed for inspection and reports."""
        gate_ehr, gate_cxr = torch.sigmoid(self.gates(torch.cat([ehr_emb, cxr_emb], dim=1))).chunk(2, dim=1)
        gate_cxr = gate_cxr * has_cxr[:, None].to(gate_cxr.dtype)
        total = gate_ehr + gate_cxr + self.eps
        return gate_ehr / total, gate_cxr / total

    def forward(self, ehr_emb: torch.Tensor, cxr_emb: torch.Tensor, has_cxr: torch.Tensor,
                unimodal_logits: dict[str, torch.Tensor]) -> torch.Tensor:
        gate_ehr, gate_cxr = self.gate_values(ehr_emb, cxr_emb, has_cxr)
        fused = (gate_ehr * torch.tanh(self.candidates["ehr"](ehr_emb))
                 + gate_cxr * torch.tanh(self.candidates["cxr"](cxr_emb)))
        return self.dropout(fused)
