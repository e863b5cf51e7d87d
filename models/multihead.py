"""The multi-head fusion model: two encoders, a fusion module, and three heads.

Heads: `ehr` and `cxr` (unimodal, on each projected embedding) and `fused` (on the fusion
module's output). Keeping the unimodal heads trained alongside the fused one is what lets
MILES measure each modality's conditional utilization, and what keeps a usable EHR-only
prediction when the image is missing (MIND, TMLR 2025).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from models.fusion.base import FusionModule
from models.heads import projection, unimodal_head
from models.names import HEADS, MODALITIES, SHARED_GROUP

UNIMODAL_HEAD_PLACEMENTS = ("encoder", "shared")
# joint: each unimodal head's loss trains its encoder too (the design's multi-head model).
# probe: the unimodal heads read detached embeddings, so only the fused loss trains the
# encoders and the unimodal heads measure what each encoder learned under fusion alone: the
# setting in which greedy learning was described (Wu et al., ICML 2022; docs/methods/study.md).
UNIMODAL_HEAD_MODES = ("joint", "probe")


class MultiHeadFusionModel(nn.Module):
    head_names: tuple[str, ...] = HEADS
    modalities: tuple[str, ...] = MODALITIES
    # False: the CXR encoder sees only the rows with an image (faster in the partial setting).
    # True: every row, zeros where there is no image, masked afterwards; per-sample gradient
    # machinery (private training) needs every layer to see the whole batch.
    encode_every_image: bool = False

    def __init__(self, ehr_encoder: nn.Module, cxr_encoder: nn.Module, fusion: FusionModule,
                 embed_dim: int, num_labels: int, unimodal_heads: str = "joint") -> None:
        super().__init__()
        if unimodal_heads not in UNIMODAL_HEAD_MODES:
            raise ValueError(f"model.unimodal_heads={unimodal_heads!r}: expected one of {', '.join(UNIMODAL_HEAD_MODES)}")
        if unimodal_heads == "probe" and not fusion.reads_embeddings:
            raise ValueError(f"model.unimodal_heads=probe with {type(fusion).__name__}: its fused output reads only "
                             "the unimodal logits, so nothing would train the encoders; use a fusion that reads "
                             "the embeddings (joint, gated, ...)")
        self.unimodal_heads = unimodal_heads
        self.embed_dim = embed_dim
        self.num_labels = num_labels
        self.encoders = nn.ModuleDict({"ehr": ehr_encoder, "cxr": cxr_encoder})
        self.projections = nn.ModuleDict({"ehr": projection(ehr_encoder.feat_dim, embed_dim),
                                          "cxr": projection(cxr_encoder.feat_dim, embed_dim)})
        self.fusion = fusion
        self.heads = nn.ModuleDict({"ehr": unimodal_head(embed_dim, num_labels),
                                    "cxr": unimodal_head(embed_dim, num_labels),
                                    "fused": fusion.build_fused_head(num_labels)})

    # ---- forward -------------------------------------------------------------------------
    def embed(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Projected embeddings {"ehr": [B, D], "cxr": [B, D]}; CXR rows without image are zeros."""
        has_cxr = batch["has_cxr"].bool()
        ehr_emb = self.projections["ehr"](self.encoders["ehr"](batch["ehr"], batch["ehr_lengths"]))
        return {"ehr": ehr_emb, "cxr": self._embed_images(batch["image"], has_cxr, ehr_emb)}

    def _embed_images(self, image: torch.Tensor, has_cxr: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Runs the CXR encoder only on rows with an image (the partial setting skips the rest)."""
        if bool(has_cxr.all()):
            return self.projections["cxr"](self.encoders["cxr"](image))
        if self.encode_every_image:
            features = self.projections["cxr"](self.encoders["cxr"](image))
            return torch.where(has_cxr[:, None], features, features.new_zeros(()))
        rows = has_cxr.nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            return like.new_zeros(like.shape[0], self.embed_dim)
        features = self.projections["cxr"](self.encoders["cxr"](image.index_select(0, rows)))
        return features.new_zeros(image.shape[0], self.embed_dim).index_copy(0, rows, features)

    def forward_from_embeddings(self, embeddings: Mapping[str, torch.Tensor],
                                has_cxr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads and fusion on given embeddings; balancers (AGM, PMR, utilization probes) call
        it with one modality's embedding altered. CXR logits are 0 where there is no image."""
        has_cxr = has_cxr.bool()
        ehr_emb, cxr_emb = embeddings["ehr"], embeddings["cxr"]
        ehr_in, cxr_in = (ehr_emb.detach(), cxr_emb.detach()) if self.unimodal_heads == "probe" else (ehr_emb, cxr_emb)
        cxr_logits = self.heads["cxr"](cxr_in)
        unimodal = {"ehr": self.heads["ehr"](ehr_in),
                    "cxr": torch.where(has_cxr[:, None], cxr_logits, cxr_logits.new_zeros(()))}
        fused = self.heads["fused"](self.fusion(ehr_emb, cxr_emb, has_cxr, unimodal))
        return {**unimodal, "fused": fused}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Batch dict of docs/architecture.md -> {"ehr", "cxr", "fused"} logits [B, L]."""
        return self.forward_from_embeddings(self.embed(batch), batch["has_cxr"])

    # ---- parameter groups for balancers --------------------------------------------------
    def modality_modules(self, unimodal_heads_in: str = "encoder") -> dict[str, list[nn.Module]]:
        """Modules per group: "ehr" / "cxr" (encoder + projection [+ its head]), "shared" (fusion + fused head [+ unimodal heads])."""
        if unimodal_heads_in not in UNIMODAL_HEAD_PLACEMENTS:
            raise ValueError(f"unimodal_heads_in={unimodal_heads_in!r}; expected one of {UNIMODAL_HEAD_PLACEMENTS}")
        groups: dict[str, list[nn.Module]] = {
            "ehr": [self.encoders["ehr"], self.projections["ehr"]],
            "cxr": [self.encoders["cxr"], self.projections["cxr"]],
            SHARED_GROUP: [self.fusion, self.heads["fused"]],
        }
        for modality in MODALITIES:
            groups[modality if unimodal_heads_in == "encoder" else SHARED_GROUP].append(self.heads[modality])
        return groups

    def modality_parameters(self, unimodal_heads_in: str = "encoder") -> dict[str, list[nn.Parameter]]:
        """Trainable parameters per group (ehr, cxr, shared); each appears exactly once."""
        return parameters_by_group(self.modality_modules(unimodal_heads_in))


def parameters_by_group(modules_by_group: Mapping[str, list[nn.Module]]) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters of each group's modules, each parameter in the first group that has it."""
    seen: set[int] = set()
    groups: dict[str, list[nn.Parameter]] = {}
    for group, modules in modules_by_group.items():
        groups[group] = []
        for module in modules:
            for parameter in module.parameters():
                if parameter.requires_grad and id(parameter) not in seen:
                    seen.add(id(parameter))
                    groups[group].append(parameter)
    return groups
