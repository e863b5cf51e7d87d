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

from data_prep.errors import PipelineInputError
from models.cxr_encoders import CXR_ENCODERS
from models.ehr_encoders import EHR_ENCODERS
from models.fusion import FUSIONS
from models.multihead import MultiHeadFusionModel
from models.registry import Registry


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


def build(cfg: Mapping[str, Any], num_labels: int, *, channels_last: bool = False) -> MultiHeadFusionModel:
    """The multi-head fusion model for `num_labels` labels from cfg.model and cfg.fusion.

    `channels_last` converts the CXR encoder to NHWC; pass it only on CUDA (train.channels_last).
    """
    model_cfg = _plain(cfg["model"])
    embed_dim = int(model_cfg["embed_dim"])
    ehr_encoder = create_from_section(EHR_ENCODERS, model_cfg["ehr"], "model.ehr")
    cxr_encoder = create_from_section(CXR_ENCODERS, model_cfg["cxr"], "model.cxr")
    fusion = create_from_section(FUSIONS, cfg["fusion"], "fusion", embed_dim)
    if channels_last:
        cxr_encoder.use_channels_last()
    return MultiHeadFusionModel(ehr_encoder, cxr_encoder, fusion, embed_dim=embed_dim, num_labels=num_labels)
