from .vit import ARCHS, MaskFeatViT, build_encoder
from .maskfeat import MaskFeat, build_pretrain_model

__all__ = ["ARCHS", "MaskFeatViT", "build_encoder", "MaskFeat", "build_pretrain_model"]
