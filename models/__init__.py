"""Models: EHR and CXR encoders, the fusion registry and the multi-head fusion model.

Public API: `build(cfg, num_labels)`, `build_unimodal(cfg, modality, num_labels)`,
`MultiHeadFusionModel`, `UnimodalModel`, the shared names (models.names), the registries' decorators
(`register_fusion`, `register_encoder` for CXR encoders, `register_ehr_encoder`) and
listings, and `masked_multihead_bce` (models.losses).
"""

from models.build import build, build_unimodal
from models.cxr_encoders import CXREncoder, list_encoders, register_encoder
from models.ehr_encoders import list_ehr_encoders, register_ehr_encoder
from models.fusion import FusionModule, list_fusions, register_fusion
from models.losses import masked_multihead_bce
from models.multihead import MultiHeadFusionModel
from models.names import HEADS, MODALITIES, PARAMETER_GROUPS
from models.unimodal import UnimodalModel

__all__ = ["HEADS", "MODALITIES", "PARAMETER_GROUPS", "CXREncoder", "FusionModule", "MultiHeadFusionModel",
           "UnimodalModel", "build", "build_unimodal", "list_ehr_encoders",
           "list_encoders", "list_fusions", "masked_multihead_bce", "register_ehr_encoder",
           "register_encoder", "register_fusion"]
