"""Regression targets per patch: HOG (the MaskFeat default) or raw pixels (the paper's ablation)."""
from __future__ import annotations

import torch
from torch import nn

from .hog import HOGGenerator


class PixelTarget(nn.Module):
    """Normalised pixels per patch, (B, 3, H, W) -> (B, N, p*p*3), optionally per-patch standardised."""

    def __init__(self, patch_size: int = 16, norm_per_patch: bool = True):
        super().__init__()
        self.patch_size, self.norm_per_patch = patch_size, norm_per_patch

    @property
    def out_dim(self) -> int:
        return 3 * self.patch_size**2

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.float().reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        x = x.reshape(b, (h // p) * (w // p), p * p * c)          # (B, N, p*p*3)
        if self.norm_per_patch:
            mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)
            x = (x - mean) / (var + 1e-6).sqrt()
        return x


def build_target(kind: str, patch_size: int, nbins: int = 9, cell_size: int = 8,
                 gaussian_window: int = 16) -> nn.Module:
    if kind == "hog":
        return HOGGenerator(nbins=nbins, cell_size=cell_size, patch_size=patch_size,
                            gaussian_window=gaussian_window)
    if kind == "pixel":
        return PixelTarget(patch_size)
    raise ValueError(f"model.target: unknown target {kind!r}; choose 'hog' or 'pixel'")
