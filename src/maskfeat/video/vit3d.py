"""Video ViT with tubelet (2 x 16 x 16) patches: the image MaskFeat ViT with a Conv3d patch embedding.

Every (T/2 x H/16 x W/16) token gets a learned absolute position embedding (joint
space-time), all tokens go through the timm blocks, masked tokens replaced by the mask token.
"""
from __future__ import annotations

from functools import partial

import torch
from timm.layers import trunc_normal_
from torch import nn

from ..models.vit import ARCHS, MaskFeatViT
from ..data.cube_mask import upsample_mask


class TubeletEmbed(nn.Module):
    """Conv3d patchify: (B, C, T, H, W) -> (B, T/t * H/p * W/p, D), token order (t, h, w).

    Takes timm's ``embed_layer`` keyword arguments plus ``num_frames`` and ``tubelet_size``.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768, bias: bool = True, num_frames: int = 16,
                 tubelet_size: int = 2, device=None, dtype=None, **_unused):
        super().__init__()
        if num_frames % tubelet_size or img_size % patch_size:
            raise ValueError(f"vit3d: {num_frames}x{img_size}px is not divisible by the tubelet "
                             f"{tubelet_size}x{patch_size}x{patch_size}")
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel, stride=kernel, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)                                  # (B, D, T', H', W')
        if tuple(x.shape[2:]) != self.grid_size:
            raise ValueError(f"vit3d: built for a {self.grid_size} token grid, got {tuple(x.shape[2:])}")
        return x.flatten(2).transpose(1, 2)               # (B, N, D)


class MaskFeatViT3D(MaskFeatViT):
    """The image ``MaskFeatViT`` on clips; ``forward_tokens`` mirrors ``MViTEncoder``.

    ``with_mask_token=False`` builds a classifier (``num_classes`` > 0) without the mask token.
    """

    def __init__(self, num_frames: int = 16, tubelet_size: int = 2, with_mask_token: bool = True, **kwargs):
        kwargs["embed_layer"] = partial(TubeletEmbed, num_frames=num_frames, tubelet_size=tubelet_size)
        super().__init__(**kwargs)
        if not with_mask_token:          # classifiers: no unused parameter (DDP would complain)
            del self.mask_token
            self.mask_token = None
        trunc_normal_(self.patch_embed.proj.weight, std=0.02)
        if self.patch_embed.proj.bias is not None:
            nn.init.zeros_(self.patch_embed.proj.bias)

    def forward_tokens(self, clips: torch.Tensor, mask: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, 3, T, H, W), mask (B, t, h, w) dividing the token grid -> (B, 1 + N, D), grid."""
        grid = self.patch_embed.grid_size
        if mask is not None:
            mask = upsample_mask(mask, grid)
        return self.forward_features(clips, mask), grid


def build_vit3d(arch: str, img_size: int = 224, num_frames: int = 16, tubelet_size: int = 2,
                patch_size: int = 16, drop_path_rate: float = 0.0, **overrides) -> MaskFeatViT3D:
    """``arch`` is 'vit3d-<name>' with <name> one of maskfeat.models.ARCHS ('vit3d-base' = ViT-B)."""
    name = "vit-" + arch.removeprefix("vit3d-")
    if not arch.startswith("vit3d-") or name not in ARCHS:
        choices = sorted("vit3d-" + a.removeprefix("vit-") for a in ARCHS)
        raise ValueError(f"model.arch: unknown video ViT {arch!r}; choose one of {choices}")
    kwargs = dict(ARCHS[name], img_size=img_size, patch_size=patch_size, drop_path_rate=drop_path_rate,
                  mlp_ratio=4.0, qkv_bias=True)
    kwargs.update(overrides)
    return MaskFeatViT3D(num_frames=num_frames, tubelet_size=tubelet_size, **kwargs)
