"""Checkpoint name maps: other toolkits' parameter names <-> ours (pure functions on state dicts).

They sit below ``eval/`` (which reads mmpretrain pre-training weights) and ``convert/`` (which
writes whole files): importing them loads no model and no converter.
"""
from .mmpretrain import mmpretrain_classifier_to_timm, mmpretrain_to_maskfeat
from .slowfast import maskfeat_to_slowfast, slowfast_to_maskfeat

__all__ = ["mmpretrain_to_maskfeat", "mmpretrain_classifier_to_timm", "slowfast_to_maskfeat",
           "maskfeat_to_slowfast"]
