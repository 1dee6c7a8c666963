"""Checkpoint conversion between maskfeat and other toolkits (mmpretrain, SlowFast, timm): one
reader per source and one writer per target (``pipeline``), on the name maps of ``maskfeat.namemaps``."""
from ..namemaps import (
           maskfeat_to_slowfast,
           mmpretrain_classifier_to_timm,
           mmpretrain_to_maskfeat,
           slowfast_to_maskfeat,
)
from .timm_export import maskfeat_encoder_to_timm

__all__ = ["mmpretrain_to_maskfeat", "mmpretrain_classifier_to_timm", "slowfast_to_maskfeat",
           "maskfeat_to_slowfast", "maskfeat_encoder_to_timm"]
