"""Prediction heads and embedding projections: deliberately plain linear layers.

The unimodal heads stay linear so that their scores measure what each encoder learned
(MILES's conditional utilization compares them with the fused head).
"""

from __future__ import annotations

from torch import nn


def projection(in_features: int, embed_dim: int) -> nn.Module:
    """Maps an encoder's features to the shared embedding width (identity when they already match)."""
    return nn.Identity() if in_features == embed_dim else nn.Linear(in_features, embed_dim)


def unimodal_head(embed_dim: int, num_labels: int) -> nn.Module:
    return nn.Linear(embed_dim, num_labels)
