"""OGM, on-the-fly gradient modulation without Gaussian enhancement (Peng et al., CVPR 2022).

The MILES paper compares against OGM and OGM-GE as two baselines: the same coefficient k_m
on the dominant encoder's gradients, with (OGM-GE) or without (OGM) the added N(0, std(g))
noise. Without the noise, the dominant encoder's updates only shrink, which is the part of
OGM-GE that rebalances; the noise is the part meant to restore generalization.
Everything else (s_m on paired stays, coefficient variants, modulation epochs, all-reduced
sums) is ogm_ge.py's.
"""

from __future__ import annotations

from training.balancers.base import register_balancer
from training.balancers.ogm_ge import OGMGE


@register_balancer("ogm")
class OGM(OGMGE):
    gaussian_enhancement = False
