"""Histogram-of-oriented-gradients targets for MaskFeat (SPEC section 2).

The generator runs batched on the model's device, under ``no_grad``, on the
normalised RGB batch. It reproduces mmpretrain's ``HOGGenerator`` (9 unsigned
bins, hard assignment, 8x8 cells, per-cell-and-channel L2 norm, optional
16x16 Gaussian window) for any image size divisible by the patch size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel(size: int, std: float) -> torch.Tensor:
    """(size, size) Gaussian centred between the middle pixels, summing to 1."""
    k = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    e = torch.exp(-(k**2) / (2 * std**2))
    g = e[:, None] * e[None, :]
    return (g / g.sum()).float()


class HOGGenerator(nn.Module):
    """HOG feature per patch: (B, 3, H, W) -> (B, H/p * W/p, 3 * nbins * (p/cell)^2).

    Layout of the last dim: index = (channel * nbins + bin) * cells^2 + dy * cells + dx,
    where ``cells = patch_size // cell_size`` (mmpretrain's order).
    """

    def __init__(self, nbins: int = 9, cell_size: int = 8, patch_size: int = 16,
                 gaussian_window: int = 16, in_chans: int = 3):
        super().__init__()
        if patch_size % cell_size:
            raise ValueError(f"hog: patch_size {patch_size} is not a multiple of cell_size {cell_size}")
        if gaussian_window and patch_size % gaussian_window and gaussian_window % patch_size:
            raise ValueError(f"hog: gaussian_window {gaussian_window} must divide or be a multiple of patch_size {patch_size}")
        self.nbins, self.cell_size, self.patch_size = nbins, cell_size, patch_size
        self.window, self.in_chans = gaussian_window, in_chans
        wx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        # One depthwise conv producing (gx, gy) per channel: weight (2C, 1, 3, 3).
        kernel = torch.stack([wx, wx.t()]).unsqueeze(1).repeat(in_chans, 1, 1, 1)
        self.register_buffer("sobel", kernel, persistent=False)
        if gaussian_window:
            # std = window / 2, as mmpretrain
            self.register_buffer("gkern", gaussian_kernel(gaussian_window, gaussian_window / 2), persistent=False)
        else:
            self.gkern = None

    @property
    def out_dim(self) -> int:
        return self.in_chans * self.nbins * (self.patch_size // self.cell_size) ** 2

    def check_size(self, h: int, w: int) -> None:
        unit = self.patch_size if not self.window else math.lcm(self.patch_size, self.window)
        if h % unit or w % unit:
            raise ValueError(f"hog: image size {h}x{w} is not divisible by {unit} (patch / window size)")

    def cell_histograms(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> L2-normalised histograms (B, C, nbins, H/cell, W/cell), fp32."""
        b, c, h, w = x.shape
        self.check_size(h, w)
        x = F.pad(x.float(), (1, 1, 1, 1), mode="reflect")
        g = F.conv2d(x, self.sobel, groups=c).view(b, c, 2, h, w)
        gx, gy = g[:, :, 0], g[:, :, 1]
        mag = torch.sqrt(gx * gx + gy * gy)                      # (B, C, H, W)
        phase = torch.atan2(gx, gy)                              # argument order as mmpretrain
        bins = torch.floor(phase / math.pi * self.nbins).long().remainder_(self.nbins)
        if self.gkern is not None:
            mag = mag * self.gkern.repeat(h // self.window, w // self.window)
        hist = torch.zeros(b, c, self.nbins, h, w, device=x.device, dtype=mag.dtype)
        hist.scatter_add_(2, bins.unsqueeze(2), mag.unsqueeze(2))  # hard assignment
        cs = self.cell_size
        hist = hist.view(b, c, self.nbins, h // cs, cs, w // cs, cs).sum(dim=(4, 6))
        return F.normalize(hist, p=2, dim=2, eps=1e-12)

    def to_patches(self, hist: torch.Tensor) -> torch.Tensor:
        """(B, C, nbins, Hc, Wc) -> (B, num_patches, C * nbins * k * k) with k cells per patch side."""
        b, c, n, hc, wc = hist.shape
        k = self.patch_size // self.cell_size
        hist = hist.reshape(b, c * n, hc // k, k, wc // k, k)    # (B, C*nbins, Hp, k, Wp, k)
        hist = hist.permute(0, 2, 4, 1, 3, 5)                    # (B, Hp, Wp, C*nbins, k, k)
        return hist.reshape(b, (hc // k) * (wc // k), c * n * k * k)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_patches(self.cell_histograms(x))

