"""Chest X-ray encoders: a 1-channel image batch -> one embedding per image.

Every backbone is built with random weights (`weights=None`: nothing is ever downloaded);
pretrained weights come only from a local state-dict file, `model.cxr.pretrained_path`.
Images are grayscale, so the first convolution takes one channel; a pretrained RGB
convolution is folded into it by summing over its input channels, which gives the same
response to a gray image (R = G = B) as the original network had.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
import torchvision
from torch import nn

from data_prep.errors import PipelineInputError
from models.registry import Registry

log = logging.getLogger(__name__)


class CXREncoder(nn.Module):
    """A backbone whose classifier was replaced by the identity: [B, 1, H, W] -> [B, feat_dim]."""

    def __init__(self, name: str, backbone: nn.Module, feat_dim: int, first_conv_key: str,
                 classifier_prefix: str, pretrained_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.feat_dim = feat_dim
        self.first_conv_key = first_conv_key
        self.classifier_prefix = classifier_prefix
        self.channels_last = False
        if pretrained_path is not None:
            load_pretrained(self, pretrained_path)

    def use_channels_last(self) -> CXREncoder:
        """NHWC weights and inputs: faster convolutions on tensor-core GPUs."""
        self.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self.backbone(image)


CXR_ENCODERS: Registry[CXREncoder] = Registry("CXR encoder")
register_encoder = CXR_ENCODERS.register


def list_encoders(pattern: str = "*") -> list[str]:
    """Registered CXR encoder names (fnmatch pattern), as timm's `list_models`."""
    return CXR_ENCODERS.names(pattern)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from a local file: a plain dict, a {"state_dict": ...} checkpoint or a DDP one."""
    if not os.path.isfile(path):
        raise PipelineInputError(f"{path}: pretrained CXR weights not found (model.cxr.pretrained_path "
                                 "must be a local state-dict file; weights are never downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise PipelineInputError(f"{path}: cannot be read as a torch state dict ({err})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PipelineInputError(f"{path}: expected a mapping of parameter names to tensors")
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return dict(state)


def _key_list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"


def load_pretrained(encoder: CXREncoder, path: str | os.PathLike[str]) -> None:
    """Strictly load a local state dict into `encoder.backbone`, minus its classifier.

    A 3-channel first convolution is summed over its input channels; any other mismatch
    (missing, unexpected or differently shaped tensors) is an error naming the keys, so a
    checkpoint of the wrong architecture is never half-loaded.
    """
    state = {key: value for key, value in read_state_dict(path).items()
             if not key.startswith(encoder.classifier_prefix)}
    first_conv = state.get(encoder.first_conv_key)
    folded = first_conv is not None and first_conv.ndim == 4 and first_conv.shape[1] == 3
    if folded:
        state[encoder.first_conv_key] = first_conv.sum(dim=1, keepdim=True)
    own = encoder.backbone.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    reshaped = sorted(key for key in own.keys() & state.keys() if own[key].shape != state[key].shape)
    if missing or unexpected or reshaped:
        problems = [f"{label} keys {_key_list(keys)}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected), ("wrong-shape", reshaped)) if keys]
        raise PipelineInputError(f"{path}: state dict does not fit CXR encoder {encoder.name!r}: "
                                 + "; ".join(problems))
    encoder.backbone.load_state_dict(state, strict=True)
    log.info("loaded pretrained CXR weights for %s from %s%s", encoder.name, path,
             " (RGB first convolution summed to 1 channel)" if folded else "")


def _one_channel_resnet(name: str, pretrained_path: str | os.PathLike[str] | None) -> CXREncoder:
    backbone = getattr(torchvision.models, name)(weights=None)
    backbone.conv1 = nn.Conv2d(1, backbone.conv1.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
    nn.init.kaiming_normal_(backbone.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    feat_dim = backbone.fc.in_features
    backbone.fc = nn.Identity()
    return CXREncoder(name, backbone, feat_dim, first_conv_key="conv1.weight", classifier_prefix="fc.",
                      pretrained_path=pretrained_path)


@register_encoder("resnet18")
def resnet18(pretrained_path: str | os.PathLike[str] | None = None) -> CXREncoder:
    return _one_channel_resnet("resnet18", pretrained_path)


@register_encoder("resnet34")
def resnet34(pretrained_path: str | os.PathLike[str] | None = None) -> CXREncoder:
    """MedFuse's CXR encoder (512-d features)."""
    return _one_channel_resnet("resnet34", pretrained_path)


@register_encoder("resnet50")
def resnet50(pretrained_path: str | os.PathLike[str] | None = None) -> CXREncoder:
    return _one_channel_resnet("resnet50", pretrained_path)


@register_encoder("densenet121")
def densenet121(pretrained_path: str | os.PathLike[str] | None = None) -> CXREncoder:
    """MONAI's DenseNet-121 (1024-d features), the common CheXNet-style backbone."""
    from monai.networks.nets import DenseNet121

    backbone = DenseNet121(spatial_dims=2, in_channels=1, out_channels=1)
    feat_dim = backbone.class_layers.out.in_features
    backbone.class_layers.out = nn.Identity()
    return CXREncoder("densenet121", backbone, feat_dim, first_conv_key="features.conv0.weight",
                      classifier_prefix="class_layers.out.", pretrained_path=pretrained_path)
