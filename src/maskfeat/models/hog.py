"""Histogram-of-oriented-gradients targets for MaskFeat (SPEC section 2).

The generator runs batched on the model's device, under ``no_grad``, on the
normalised RGB batch. It reproduces mmpretrain's ``HOGGenerator`` (9 unsigned
bins, hard assignment, 8x8 cells, per-cell-and-channel L2 norm, optional
16x16 Gaussian window) for any image size divisible by the patch size.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.device import is_cpu, is_cuda

HOG_IMPLS = ("auto", "compiled", "eager")


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

    name = "HOG"

    def __init__(self, nbins: int = 9, cell_size: int = 8, patch_size: int = 16,
                 gaussian_window: int = 16, in_chans: int = 3):
        super().__init__()
        if patch_size % cell_size:
            raise ValueError(f"hog: patch_size {patch_size} is not a multiple of cell_size {cell_size}")
        if gaussian_window and patch_size % gaussian_window and gaussian_window % patch_size:
            raise ValueError(f"hog: gaussian_window {gaussian_window} must divide or be a multiple of "
                             f"patch_size {patch_size}")
        self.nbins, self.cell_size, self.patch_size = nbins, cell_size, patch_size
        self.window, self.in_chans = gaussian_window, in_chans
        wx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        # One depthwise conv producing (gx, gy) per channel: weight (2C, 1, 3, 3).
        kernel = torch.stack([wx, wx.t()]).unsqueeze(1).repeat(in_chans, 1, 1, 1)
        self.register_buffer("sobel", kernel, persistent=False)
        if gaussian_window:
            # std = window / 2, as mmpretrain
            gkern = gaussian_kernel(gaussian_window, gaussian_window / 2)
            self.register_buffer("gkern", gkern, persistent=False)
        else:
            self.gkern = None
        self._compiled = None       # see set_impl
        self._base, self._base_key = None, None   # cached slot offsets

    @property
    def out_dim(self) -> int:
        return self.in_chans * self.nbins * (self.patch_size // self.cell_size) ** 2

    def grid(self, h: int, w: int) -> tuple[int, int]:
        """Target token grid (H/p, W/p) of an (h, w) image."""
        return h // self.patch_size, w // self.patch_size

    def check_size(self, h: int, w: int) -> None:
        unit = self.patch_size if not self.window else math.lcm(self.patch_size, self.window)
        if h % unit or w % unit:
            raise ValueError(f"hog: image size {h}x{w} is not divisible by {unit} (patch / window size)")

    def cell_histograms(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> L2-normalised histograms (B, C, nbins, H/cell, W/cell), fp32 (autocast off)."""
        b, c, h, w = x.shape
        self.check_size(h, w)
        with torch.autocast(x.device.type, enabled=False):    # fp32 on every device, whoever calls
            x = F.pad(x.float(), (1, 1, 1, 1), mode="reflect")
            if is_cpu(x.device):        # oneDNN's channels-last depthwise conv: 2.4x faster, bitwise equal
                x = x.contiguous(memory_format=torch.channels_last)
            grad = F.conv2d(x, self.sobel.float(), groups=c)
            grad = grad.contiguous().view(b, c, 2, h, w)                    # (B, C, [gx, gy], H, W)
            window = None
            if self.gkern is not None:
                window = self.gkern.float().repeat(h // self.window, w // self.window)   # (H, W)
            return self._binning(grad, window)

    def _binning_eager(self, grad: torch.Tensor, window: torch.Tensor | None) -> torch.Tensor:
        """(B, C, 2, H, W) gradients -> normalised cell histograms (B, C, nbins, Hc, Wc).

        Each pixel's magnitude is added straight into its (image, channel, cell, bin) slot,
        so the (B, C, nbins, H, W) one-hot volume of a scatter (mmpretrain) is never built;
        the arithmetic per pixel is mmpretrain's: sqrt(gx^2 + gy^2), floor(atan2(gx, gy) / pi
        * nbins) mod nbins. Compiled (``set_impl``), the pointwise part fuses into one kernel
        that feeds the adds. (A one-hot select summed per cell would fuse too, but inductor
        then recomputes atan2 once per bin: 5x slower on CPU.)
        """
        b, c, _, h, w = grad.shape
        cs = self.cell_size
        hc, wc = h // cs, w // cs
        gx, gy = grad[:, :, 0], grad[:, :, 1]
        mag = gx * gx
        mag.addcmul_(gy, gy).sqrt_()                                        # (B, C, H, W)
        if window is not None:
            mag.mul_(window)
        bins = torch.atan2(gx, gy).div_(math.pi).mul_(self.nbins).floor_()     # in [-nbins, nbins]
        bins = bins.to(torch.int32).remainder_(self.nbins)                  # exact: small integers
        index = bins.add_(self._slot_base(b, c, h, w, grad.device))         # (B, C, H, W) flat slot
        hist = torch.zeros(b * c * hc * wc * self.nbins, device=grad.device, dtype=mag.dtype)
        hist.index_add_(0, index.view(-1), mag.view(-1))
        # bins last: fast norm
        hist = F.normalize(hist.view(b, c, hc, wc, self.nbins), p=2, dim=-1, eps=1e-12)
        return hist.permute(0, 1, 4, 2, 3)                                  # (B, C, nbins, Hc, Wc) view

    def _slot_base(self, b: int, c: int, h: int, w: int, device) -> torch.Tensor:
        """(B, C, H, W) int32: flat offset of each pixel's (image, channel, cell) in the histogram
        laid out as (B, C, Hc, Wc, nbins); the pixel's bin is added to it."""
        key = (b, c, h, w, str(device))
        if torch.compiler.is_compiling() or self._base_key != key:   # compiled: fused, no cache guard
            cs = self.cell_size
            hc, wc = h // cs, w // cs
            ys = torch.arange(h, device=device, dtype=torch.int32) // cs
            xs = torch.arange(w, device=device, dtype=torch.int32) // cs
            cell = (ys[:, None] * wc + xs[None, :]) * self.nbins            # (H, W)
            plane = torch.arange(b * c, device=device, dtype=torch.int32).view(b, c, 1, 1)
            plane = plane * (self.nbins * hc * wc)
            if b * c * self.nbins * hc * wc >= 2**31:
                raise ValueError("hog: batch too large for int32 histogram indices")
            base = (plane + cell).contiguous()
            if torch.compiler.is_compiling():
                return base
            self._base, self._base_key = base, key
        return self._base

    def _binning(self, grad: torch.Tensor, window: torch.Tensor | None) -> torch.Tensor:
        if self._compiled is None:
            return self._binning_eager(grad, window)
        try:
            return self._compiled(grad, window)
        except Exception as e:     # no compiler, unsupported backend: the eager path is exact too
            warnings.warn(f"hog: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                          f"computing HOG eagerly", RuntimeWarning, stacklevel=2)
            self._compiled = None
            return self._binning_eager(grad, window)

    def set_impl(self, impl: str, device: torch.device | str | None = None) -> HOGGenerator:
        """``compiled``: torch.compile the binning (one fused kernel); ``eager``; ``auto``:
        compiled on CUDA, eager elsewhere (a CPU compile costs tens of seconds up front)."""
        if impl not in HOG_IMPLS:
            raise ValueError(f"hog.impl: unknown value {impl!r}; choose {', '.join(HOG_IMPLS)}")
        device = torch.device(device) if device is not None else self.sobel.device
        use = impl == "compiled" or (impl == "auto" and is_cuda(device))
        self._compiled = torch.compile(self._binning_eager, dynamic=False) if use else None
        return self

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

