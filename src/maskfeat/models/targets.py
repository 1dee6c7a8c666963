"""Regression targets per token: HOG (the MaskFeat default) or raw pixels (the paper's ablation) of
images, HOG of clips; one builder per modality (rows of ``build.MODALITIES``)."""
from __future__ import annotations

import torch
from torch import nn

from .hog import HOGGenerator
from .video_hog import VideoHOG


class PixelTarget(nn.Module):
    """Normalised pixels per patch, (B, 3, H, W) -> (B, N, p*p*3), optionally per-patch standardised."""

    name = "pixel"

    def __init__(self, patch_size: int = 16, norm_per_patch: bool = True):
        super().__init__()
        self.patch_size, self.norm_per_patch = patch_size, norm_per_patch

    def grid(self, h: int, w: int) -> tuple[int, int]:
        """Target token grid (H/p, W/p) of an (h, w) image."""
        return h // self.patch_size, w // self.patch_size

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


def image_target(model: dict, hog: dict) -> nn.Module:
    """From a config's ``model`` and ``hog`` sections: ``model.target`` of every image patch."""
    return build_target(model["target"], model["patch_size"], nbins=hog["nbins"], cell_size=hog["cell_size"],
                        gaussian_window=hog["gaussian_window"])


def video_target(model: dict, hog: dict) -> VideoHOG:
    """From a config's ``hog`` section: the HOG of every clip token (its first frame)."""
    return VideoHOG(temporal_stride=hog["temporal_stride"], nbins=hog["nbins"], cell_size=hog["cell_size"],
                    patch_size=hog["patch_size"], gaussian_window=hog["gaussian_window"])
