from .build import MODALITIES, PRETRAIN_MODELS, build_pretrain_model
from .maskfeat import MaskFeat
from .visible import VisibleMaskFeat
from .vit import ARCHS, MaskFeatViT, build_encoder

__all__ = ["ARCHS", "MaskFeatViT", "build_encoder", "MaskFeat", "VisibleMaskFeat", "MODALITIES",
           "PRETRAIN_MODELS", "build_pretrain_model"]
