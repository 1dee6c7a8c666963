"""Checkpoint converters between maskfeat and other toolkits."""
from .mmpretrain import mmpretrain_to_maskfeat

__all__ = ["mmpretrain_to_maskfeat"]
