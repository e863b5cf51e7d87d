"""The fusion interface and its registry.

A fusion module receives the two projected modality embeddings, the image mask and the
unimodal heads' logits, and returns what the fused head consumes. It also builds that head
(`build_fused_head`): a linear layer on its fused representation by default, the identity
when the module already returns logits (late fusion). The model therefore always computes
`heads["fused"](fusion(...))` without knowing which method it holds.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from models.registry import Registry


class FusionModule(nn.Module):
    """Base class of every fusion method.

    Subclasses set `fused_dim` (the width of what `forward` returns) and declare
    `missing_image_rule`, one sentence on what they do for a stay without an image
    (quoted in docs/methods/fusion.md). In rows where `has_cxr` is False, `cxr_emb`
    holds zeros and `unimodal_logits["cxr"]` placeholders; a method must not let those
    values leak into the output except through its declared rule.
    """

    missing_image_rule: ClassVar[str] = ""
    # False for a method whose output depends on the embeddings only through the unimodal
    # logits (late fusion): with probe heads (detached) its fused loss could not train the encoders.
    reads_embeddings: ClassVar[bool] = True
    fused_dim: int

    def build_fused_head(self, num_labels: int) -> nn.Module:
        return nn.Linear(self.fused_dim, num_labels)

    def forward(self, ehr_emb: torch.Tensor, cxr_emb: torch.Tensor, has_cxr: torch.Tensor,
                unimodal_logits: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


FUSIONS: Registry[FusionModule] = Registry("fusion method")
register_fusion = FUSIONS.register


def list_fusions(pattern: str = "*") -> list[str]:
    """Registered fusion names (fnmatch pattern); configs/fusion/<name>.yaml selects one."""
    return FUSIONS.names(pattern)


class LearnedToken(nn.Module):
    """A learned vector (a missing-image token, a null attention key), handed out once per row.

    `forward(like)` returns the token expanded to `like`'s batch size: [B, *shape]. Holding it
    as a module with a batch-shaped output, rather than a bare `nn.Parameter` read by a
    bigger module, is what lets per-sample gradient machinery (Opacus, for private
    training: training/privacy) see each row's share of its gradient.
    """

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(*shape))

    def forward(self, like: torch.Tensor) -> torch.Tensor:
        return self.token.to(like.dtype).expand(like.shape[0], *self.token.shape)


def masked_missing(cxr_emb: torch.Tensor, has_cxr: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """The CXR embedding with rows without an image replaced by a learned token."""
    return torch.where(has_cxr[:, None], cxr_emb, token.to(cxr_emb.dtype).expand_as(cxr_emb))
