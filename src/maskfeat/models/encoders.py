"""Pre-training and classification encoders by modality: how the input becomes tokens.

Images: a timm ViT with a mask token (``vit.MaskFeatViT``, Conv2d patches). Clips: MViTv2
(``mvit.MViTEncoder``, pooled stages) or a tubelet ViT (``vit3d.MaskFeatViT3D``, Conv3d patches).
"""
from __future__ import annotations

from torch import nn

from .mvit import MVIT_ARCHS, MViTEncoder
from .vit import MaskFeatViT, build_encoder
from .vit3d import build_vit3d


def build_image_encoder(model: dict) -> MaskFeatViT:
    """From a config's ``model`` section: the ViT ``model.arch`` with a mask token."""
    return build_encoder(model["arch"], img_size=model["img_size"], patch_size=model["patch_size"],
                         drop_path_rate=model["drop_path_rate"])


def build_video_encoder(model: dict, pretrain: bool = True, num_classes: int = 0) -> nn.Module:
    """From a config's ``model`` section: MViTv2 ('mvitv2-*') or tubelet ViT ('vit3d-*')."""
    arch = model["arch"]
    if arch in MVIT_ARCHS:
        return MViTEncoder(arch, spatial_size=model["img_size"], temporal_size=model["num_frames"],
                           pretrain=pretrain, num_classes=num_classes, dropout=model.get("dropout", 0.0),
                           drop_path_rate=model["drop_path_rate"], head_pool=model.get("head_pool", "cls"))
    if arch.startswith("vit3d-"):
        extra = {} if pretrain else dict(num_classes=num_classes, global_pool=model.get("global_pool", "avg"),
                                         drop_rate=model.get("dropout", 0.0), with_mask_token=False)
        return build_vit3d(arch, img_size=model["img_size"], num_frames=model["num_frames"],
                           tubelet_size=model["tubelet_size"], patch_size=model["patch_size"],
                           drop_path_rate=model["drop_path_rate"], **extra)
    choices = sorted(MVIT_ARCHS) + ["vit3d-<vit arch>, e.g. vit3d-base"]
    raise ValueError(f"model.arch: unknown video architecture {arch!r}; choose one of {choices}")
