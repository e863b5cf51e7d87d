"""`build(cfg, num_labels)`: the one door from the composed configuration to a model.

Names in the config (`model.ehr.name`, `model.cxr.name`, `fusion.name`) are looked up in
the registries; every other key of those sections is passed to the factory as a keyword,
so a method's settings live in its YAML and nowhere else. A setting the factory does not
accept is a one-line PipelineInputError naming the config section.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from data_prep.errors import PipelineInputError
from models.cxr_encoders import CXR_ENCODERS
from models.ehr_encoders import EHR_ENCODERS
from models.fusion import FUSIONS
from models.multihead import MultiHeadFusionModel
from models.names import MODALITIES
from models.registry import Registry
from models.unimodal import UnimodalModel


def _plain(section: Any) -> dict[str, Any]:
    if isinstance(section, DictConfig):
        return OmegaConf.to_container(section, resolve=True)  # type: ignore[return-value]
    return dict(section)


def create_from_section(registry: Registry[Any], section: Mapping[str, Any], where: str, *args: Any) -> Any:
    """registry[section.name](*args, **other keys of section), with config errors on one line."""
    settings = _plain(section)
    name = settings.pop("name", None)
    if name not in registry:
        known = ", ".join(registry.names())
        raise PipelineInputError(f"{where}.name={name!r}: unknown {registry.kind}; known: {known}")
    factory = registry.get(name)
    try:
        inspect.signature(factory).bind(*args, **settings)
    except TypeError as err:
        raise PipelineInputError(f"{where} ({registry.kind} {name!r}): {err}") from None
    return factory(*args, **settings)


def build_encoder(model_cfg: Mapping[str, Any], modality: str, *, ehr_features: int | None = None,
                  channels_last: bool = False) -> nn.Module:
    """One modality's encoder from model.<modality>.

    The EHR encoder's input width is the prepared tensors' feature count (`ehr_features`,
    which the dataset reads from values.npy), not a setting: a setting beside the data
    that record it could only disagree with them. model.ehr.input_size, if still given,
    must match.
    """
    section = _plain(model_cfg[modality])
    if modality == "cxr":
        encoder = create_from_section(CXR_ENCODERS, section, "model.cxr")
        return encoder.use_channels_last() if channels_last else encoder
    configured = section.pop("input_size", None)
    if ehr_features is not None and configured is not None and int(configured) != int(ehr_features):
        raise PipelineInputError(f"model.ehr.input_size={configured}: the prepared EHR tensors have "
                                 f"{ehr_features} features; remove the setting (it is read from the data)")
    if ehr_features is None and configured is None:
        raise PipelineInputError("model.ehr: the EHR input width is unknown (pass the prepared "
                                 "tensors' feature count, or set model.ehr.input_size)")
    section["input_size"] = int(ehr_features if ehr_features is not None else configured)
    return create_from_section(EHR_ENCODERS, section, "model.ehr")


def build(cfg: Mapping[str, Any], num_labels: int, *, ehr_features: int | None = None,
          channels_last: bool = False) -> MultiHeadFusionModel:
    """The multi-head fusion model for `num_labels` labels from cfg.model and cfg.fusion.

    `channels_last` converts the CXR encoder to NHWC; pass it only on CUDA (train.channels_last).
    """
    model_cfg = _plain(cfg["model"])
    embed_dim = int(model_cfg["embed_dim"])
    ehr_encoder = build_encoder(model_cfg, "ehr", ehr_features=ehr_features)
    cxr_encoder = build_encoder(model_cfg, "cxr", channels_last=channels_last)
    fusion = create_from_section(FUSIONS, cfg["fusion"], "fusion", embed_dim)
    return MultiHeadFusionModel(ehr_encoder, cxr_encoder, fusion, embed_dim=embed_dim, num_labels=num_labels,
                                unimodal_heads=str(model_cfg.get("unimodal_heads", "joint")))


def build_unimodal(cfg: Mapping[str, Any], modality: str, num_labels: int, *,
                   ehr_features: int | None = None, channels_last: bool = False) -> UnimodalModel:
    """One encoder (the same model.<modality> section as the multi-head model's) and its head."""
    model_cfg = _plain(cfg["model"])
    if modality not in MODALITIES:
        raise PipelineInputError(f"regime.modality={modality!r}: expected one of {', '.join(MODALITIES)}")
    encoder = build_encoder(model_cfg, modality, ehr_features=ehr_features, channels_last=channels_last)
    return UnimodalModel(modality, encoder, embed_dim=int(model_cfg["embed_dim"]), num_labels=num_labels)
