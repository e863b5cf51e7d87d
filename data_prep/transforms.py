"""Image transforms built from `data.cxr`: MONAI random augmentation for training, a center crop for evaluation.

Inputs are channel-first float32 tensors [1, S, S] already scaled to [0, 1] (the cache's
uint8 / 255). Both pipelines end with the same fixed normalization, `(x - mean) / std` with
`data.cxr.normalize.mean/std` (defaults 0.449 / 0.226: the averages of ImageNet's three
channel means and stds, the usual single-channel equivalent, so ImageNet-pretrained weights
with a summed conv1 see inputs on the scale they were trained on).

Randomness is seeded through MONAI's `set_random_state`; `seed_worker` reseeds each
DataLoader worker from torch's per-worker seed, so a run is deterministic given its seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig

if TYPE_CHECKING:
    from monai.transforms import Compose, NormalizeIntensity

# MONAI is imported where a pipeline is built, not here: importing it costs ~3 s (it loads all
# of its subpackages), which every stage that merely imports the dataset module would pay,
# such as teachers@<task>'s no-op under a regime without teachers.

DEFAULT_MEAN, DEFAULT_STD = 0.449, 0.226


def _normalize(cxr: DictConfig) -> NormalizeIntensity:
    from monai.transforms import NormalizeIntensity

    norm = cxr.get("normalize") or {}
    return NormalizeIntensity(subtrahend=float(norm.get("mean", DEFAULT_MEAN)),
                              divisor=float(norm.get("std", DEFAULT_STD)))


def _augmentations(augment: DictConfig, image_size: int) -> list[Callable]:
    """The random steps in order: horizontal flip, affine (rotate/scale/translate)."""
    from monai.transforms import RandAffine, RandFlip

    steps: list[Callable] = []
    if augment.get("flip", False):
        steps.append(RandFlip(prob=0.5, spatial_axis=1))
    rotate = math.radians(float(augment.get("rotate_degrees", 0.0)))
    scale = float(augment.get("scale", 0.0))
    translate = float(augment.get("translate", 0.0)) * image_size
    if rotate or scale or translate:
        steps.append(RandAffine(prob=1.0, rotate_range=(rotate,), scale_range=(scale, scale),
                                translate_range=(translate, translate), padding_mode="border",
                                mode="bilinear"))
    return steps


def build_transform(cxr: DictConfig, train: bool) -> Compose:
    """The image pipeline for `data.cxr`: training (random) or evaluation (deterministic)."""
    from monai.transforms import CenterSpatialCrop, Compose, RandSpatialCrop

    crop = int(cxr.crop_size)
    if train and cxr.get("augment") is not None:
        steps = [*_augmentations(cxr.augment, int(cxr.image_size)),
                 RandSpatialCrop(roi_size=(crop, crop), random_size=False)]
    else:
        steps = [CenterSpatialCrop(roi_size=(crop, crop))]
    return Compose([*steps, _normalize(cxr)])


def seed_transform(transform: Callable | None, seed: int) -> None:
    if transform is not None and hasattr(transform, "set_random_state"):
        transform.set_random_state(seed=seed % (2**32))


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: torch gives each worker base_seed + worker_id; reuse it."""
    info = torch.utils.data.get_worker_info()
    if info is not None:
        seed_transform(getattr(info.dataset, "transform", None), torch.initial_seed())
