"""Bidirectional cross-modal attention, in the style of multimodal transformers
(Vaswani et al. 2017 attention; Tsai et al. 2019 MulT's crossmodal blocks).

Each modality embedding is expanded into `num_tokens` learned tokens (one embedding is a
single vector, and attention over a single key is a plain linear map). EHR tokens query
the CXR tokens and CXR tokens query the EHR tokens, with nn.MultiheadAttention, a
residual connection and LayerNorm. Every key set also holds one learned "null" key, so a
query always has something to attend to: when the image is missing, the CXR keys are
masked (key padding mask) and the EHR tokens attend to the null key only. The fused
representation is [mean EHR tokens ; mean CXR tokens], the latter replaced by a learned
missing-image token for stays without an image.
"""

from __future__ import annotations

import torch
from torch import nn

from models.fusion.base import FusionModule, LearnedToken, masked_missing, register_fusion


class CrossModalBlock(nn.Module):
    """Queries of one modality attend to the other's tokens plus a null key."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.null_key = LearnedToken(1, embed_dim)
        self.attention = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor,
                key_missing: torch.Tensor | None = None) -> torch.Tensor:
        batch, num_keys, _ = keys.shape
        keys = torch.cat([keys, self.null_key(keys)], dim=1)
        padding_mask = None
        if key_missing is not None:  # True = ignore; the null key is never ignored
            padding_mask = torch.cat([key_missing[:, None].expand(batch, num_keys),
                                      key_missing.new_zeros(batch, 1)], dim=1)
        attended, _ = self.attention(queries, keys, keys, key_padding_mask=padding_mask, need_weights=False)
        return self.norm(queries + attended)


@register_fusion("cross_attention")
class CrossAttentionFusion(FusionModule):
    missing_image_rule = ("CXR keys are masked (EHR tokens attend to a learned null key) and a "
                          "learned missing-image token replaces the pooled CXR representation")

    def __init__(self, embed_dim: int, num_tokens: int = 4, num_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.tokenizers = nn.ModuleDict({"ehr": nn.Linear(embed_dim, num_tokens * embed_dim),
                                         "cxr": nn.Linear(embed_dim, num_tokens * embed_dim)})
        self.ehr_from_cxr = CrossModalBlock(embed_dim, num_heads, dropout)
        self.cxr_from_ehr = CrossModalBlock(embed_dim, num_heads, dropout)
        self.missing_token = LearnedToken(embed_dim)
        self.fused_dim = 2 * embed_dim

    def _tokens(self, modality: str, embedding: torch.Tensor) -> torch.Tensor:
        return self.tokenizers[modality](embedding).unflatten(1, (self.num_tokens, -1))

    def forward(self, ehr_emb: torch.Tensor, cxr_emb: torch.Tensor, has_cxr: torch.Tensor,
                unimodal_logits: dict[str, torch.Tensor]) -> torch.Tensor:
        ehr_tokens, cxr_tokens = self._tokens("ehr", ehr_emb), self._tokens("cxr", cxr_emb)
        ehr_out = self.ehr_from_cxr(ehr_tokens, cxr_tokens, key_missing=~has_cxr)
        cxr_out = self.cxr_from_ehr(cxr_tokens, ehr_tokens)
        pooled = cxr_out.mean(dim=1)
        cxr_pooled = masked_missing(pooled, has_cxr, self.missing_token(pooled))
        return torch.cat([ehr_out.mean(dim=1), cxr_pooled], dim=1)
