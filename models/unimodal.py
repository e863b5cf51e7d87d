"""A unimodal model: one encoder, its projection and its head, trained alone.

It is the greedy-learning reference (Wu et al., ICML 2022): how well one modality's encoder
learns when nothing else competes for the gradient, to set beside the same encoder's head
inside the jointly trained multi-head model. It is also what MIND's teachers are.

It keeps the multi-head model's interface (`embed`, `forward_from_embeddings`, `forward`,
`modality_modules`, `modality_parameters`, `head_names`), so the training engine, the
objective, the predictions file and evaluation treat it without special cases: its output
is the one head named after its modality.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models.heads import projection, unimodal_head
from models.multihead import parameters_by_group
from models.names import IMAGE_HEAD, MODALITIES, SHARED_GROUP


class UnimodalModel(nn.Module):
    def __init__(self, modality: str, encoder: nn.Module, embed_dim: int, num_labels: int) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality={modality!r}: expected one of {', '.join(MODALITIES)}")
        self.modality = modality
        self.head_names: tuple[str, ...] = (modality,)
        self.modalities: tuple[str, ...] = (modality,)
        self.embed_dim, self.num_labels = embed_dim, num_labels
        self.encoders = nn.ModuleDict({modality: encoder})
        self.projections = nn.ModuleDict({modality: projection(encoder.feat_dim, embed_dim)})
        self.heads = nn.ModuleDict({modality: unimodal_head(embed_dim, num_labels)})

    def embed(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        encoder, project = self.encoders[self.modality], self.projections[self.modality]
        if self.modality == IMAGE_HEAD:
            return {self.modality: project(encoder(batch["image"]))}
        return {self.modality: project(encoder(batch["ehr"], batch["ehr_lengths"]))}

    def forward_from_embeddings(self, embeddings: Mapping[str, torch.Tensor],
                                has_cxr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The one head's logits; as in the multi-head model, image logits are 0 without an image."""
        logits = self.heads[self.modality](embeddings[self.modality])
        if self.modality == IMAGE_HEAD:
            logits = torch.where(has_cxr.bool()[:, None], logits, logits.new_zeros(()))
        return {self.modality: logits}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.forward_from_embeddings(self.embed(batch), batch["has_cxr"])

    def modality_modules(self, unimodal_heads_in: str = "encoder") -> dict[str, list[nn.Module]]:
        """One learning-rate group: the encoder, its projection and its head (no shared part)."""
        modules = [self.encoders[self.modality], self.projections[self.modality], self.heads[self.modality]]
        return {self.modality: modules, SHARED_GROUP: []}

    def modality_parameters(self, unimodal_heads_in: str = "encoder") -> dict[str, list[nn.Parameter]]:
        return parameters_by_group(self.modality_modules(unimodal_heads_in))
