from .vit import ARCHS, MaskFeatViT, build_encoder
from .maskfeat import MaskFeat
from .visible import VisibleMaskFeat
from .build import PRETRAIN_MODELS, build_pretrain_model

__all__ = ["ARCHS", "MaskFeatViT", "build_encoder", "MaskFeat", "VisibleMaskFeat", "PRETRAIN_MODELS",
           "build_pretrain_model"]
