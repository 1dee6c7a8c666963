"""Checkpoint converters between maskfeat and other toolkits (mmpretrain, SlowFast, timm)."""
from .mmpretrain import mmpretrain_classifier_to_timm, mmpretrain_to_maskfeat
from .slowfast import maskfeat_to_slowfast, slowfast_to_maskfeat
from .timm_export import maskfeat_encoder_to_timm

__all__ = ["mmpretrain_to_maskfeat", "mmpretrain_classifier_to_timm", "slowfast_to_maskfeat",
           "maskfeat_to_slowfast", "maskfeat_encoder_to_timm"]
