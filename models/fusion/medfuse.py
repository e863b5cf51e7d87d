"""MedFuse's fusion (Hayat, Geras, Shamout, MLHC 2022): an LSTM over the modality sequence.

The embeddings form a sequence [EHR, CXR]; the LSTM's final hidden state is the fused
representation. A stay without an image is a sequence of length one, so the recurrence
never sees a placeholder: packing drops the CXR step.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from models.fusion.base import FusionModule, register_fusion


@register_fusion("medfuse")
class MedFuseFusion(FusionModule):
    missing_image_rule = "the CXR step is dropped: the LSTM reads a sequence of length 1 (EHR only)"

    def __init__(self, embed_dim: int, hidden_size: int = 512, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fused_dim = hidden_size

    def forward(self, ehr_emb: torch.Tensor, cxr_emb: torch.Tensor, has_cxr: torch.Tensor,
                unimodal_logits: dict[str, torch.Tensor]) -> torch.Tensor:
        sequence = torch.stack([ehr_emb, cxr_emb], dim=1)  # [B, 2, D]
        lengths = 1 + has_cxr.detach().to("cpu", torch.int64)
        packed = pack_padded_sequence(sequence, lengths, batch_first=True, enforce_sorted=False)
        _, (final_hidden, _) = self.lstm(packed)
        return self.dropout(final_hidden[-1])
