"""HOG targets for video tokens (SPEC section 5): the image HOG of the first frame of each token.

With a temporal token stride of 2, a 16-frame clip has 8 temporal tokens and the targets
come from frames 0, 2, ..., 14. No Gaussian window by default (official SlowFast code).
"""
from __future__ import annotations

import torch
from torch import nn

from .hog import HOGGenerator


class VideoHOG(nn.Module):
    """(B, 3, T, H, W) normalised clip -> (B, T/stride * H/p * W/p, 108), token order (t, h, w)."""

    name = "HOG"

    def __init__(self, temporal_stride: int = 2, nbins: int = 9, cell_size: int = 8,
                 patch_size: int = 16, gaussian_window: int = 0):
        super().__init__()
        if temporal_stride < 1:
            raise ValueError(f"hog.temporal_stride must be >= 1, got {temporal_stride}")
        self.temporal_stride = temporal_stride
        self.hog = HOGGenerator(nbins=nbins, cell_size=cell_size, patch_size=patch_size,
                                gaussian_window=gaussian_window)

    @property
    def out_dim(self) -> int:
        return self.hog.out_dim

    @property
    def patch_size(self) -> int:
        return self.hog.patch_size

    def grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Target token grid (T', H', W') of a (t, h, w) clip."""
        if t % self.temporal_stride:
            raise ValueError(f"hog: {t} frames are not divisible by the temporal stride "
                             f"{self.temporal_stride}")
        p = self.hog.patch_size
        return t // self.temporal_stride, h // p, w // p

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clips.shape
        tt, hp, wp = self.grid(t, h, w)
        frames = clips[:, :, :: self.temporal_stride]                       # (B, C, T', H, W)
        frames = frames.transpose(1, 2).reshape(b * tt, c, h, w)             # (B*T', C, H, W)
        feats = self.hog(frames)                                             # (B*T', H'*W', D)
        return feats.reshape(b, tt * hp * wp, feats.shape[-1])              # (B, T'*H'*W', D)
