"""Video MaskFeat: an MViTv2 or video-ViT encoder, a linear head and masked MSE on per-token HOG."""
from __future__ import annotations

import torch
from torch import nn

from ..models.maskfeat import MaskFeatOutput, masked_mse
from .cube_mask import upsample_mask
from .hog3d import VideoHOG
from .mvit import MVIT_ARCHS, MViTEncoder
from .vit3d import build_vit3d


class VideoMaskFeat(nn.Module):
    """``model(clips, mask) -> MaskFeatOutput``, the interface of the image ``MaskFeat``.

    clips (B, 3, T, H, W) normalised; mask (B, t, h, w) bool, True = masked, on any grid that
    divides both the encoder's patch grid and its output grid (the cube-mask grid, 8x7x7 for
    16x224x224, or the token grid itself). The encoder's final LayerNorm + ``head`` (Linear)
    predict the HOG of every output token; the loss averages over masked tokens only.
    """

    def __init__(self, encoder: nn.Module, target: VideoHOG):
        super().__init__()
        self.encoder, self.target = encoder, target
        self.head = nn.Linear(encoder.embed_dim, target.out_dim)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """Read by timm's param-group builder: the mask token never decays."""
        return {"encoder.mask_token"}

    def forward(self, clips: torch.Tensor, mask: torch.Tensor,
                return_outputs: bool = False) -> MaskFeatOutput:
        # 1. targets from the full clip, fp32, no grad
        with torch.autocast(clips.device.type, enabled=False):
            target = self.target(clips)                                   # (B, N, D_t)
        # 2. encoder with masked patch embeddings replaced by the mask token
        tokens, grid = self.encoder.forward_tokens(clips, mask)           # (B, prefix + N, C)
        tokens = tokens[:, self.encoder.num_prefix_tokens:]               # (B, N, C)
        expected = self.target.grid(*clips.shape[2:])
        if tuple(grid) != expected:
            raise ValueError(f"encoder output grid {tuple(grid)} != HOG target grid {expected}; "
                             "check hog.temporal_stride and the encoder's strides")
        token_mask = upsample_mask(mask.bool(), grid).flatten(1)          # (B, N)
        # 3. linear head, 4. MSE on masked tokens only
        pred = self.head(tokens)                                          # (B, N, D_t)
        loss = masked_mse(pred, target, token_mask)
        if return_outputs:
            return MaskFeatOutput(loss, pred, target, token_mask)
        return MaskFeatOutput(loss)


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


def build_video_model(cfg: dict) -> VideoMaskFeat:
    """Pre-training model from the ``model`` and ``hog`` sections of a VIDEO_PRETRAIN config."""
    h = cfg["hog"]
    target = VideoHOG(temporal_stride=h["temporal_stride"], nbins=h["nbins"], cell_size=h["cell_size"],
                      patch_size=h["patch_size"], gaussian_window=h["gaussian_window"])
    return VideoMaskFeat(build_video_encoder(cfg["model"], pretrain=True), target)
