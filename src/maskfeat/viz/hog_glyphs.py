"""HOG as oriented-gradient glyphs: the classic rendering (as skimage.feature.hog(visualize=True)).

Each cell becomes a small square in which every orientation bin draws a line through the
cell centre, along the edge direction (perpendicular to the bin's gradient orientation),
with brightness proportional to the bin's value.

Orientation convention of maskfeat.models.hog: ``gx``/``gy`` are cross-correlations with
``[[1,0,-1],...]`` (so gx = I(x-1) - I(x+1)), and the bin of a pixel is
floor(atan2(gx, gy) / pi * nbins) mod nbins. Bin b therefore holds gradients whose
direction in (row, col) coordinates is +-(cos t, sin t) with t = (b + 0.5) * pi / nbins,
and the edge it stands for runs along (-sin t, cos t).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from skimage.draw import line_aa


def bin_gradient_angles(nbins: int) -> np.ndarray:
    """(nbins,) centre angle t of each bin; gradient direction (row, col) = (cos t, sin t)."""
    return (np.arange(nbins) + 0.5) * math.pi / nbins


def glyph_stamps(nbins: int, cell_px: int) -> np.ndarray:
    """(nbins, cell_px, cell_px) anti-aliased unit lines, one per bin, centred in the cell."""
    stamps = np.zeros((nbins, cell_px, cell_px), dtype=np.float32)
    c = cell_px // 2
    radius = max(cell_px // 2 - 1, 1)
    for b, t in enumerate(bin_gradient_angles(nbins)):
        dr, dc = -math.sin(t) * radius, math.cos(t) * radius   # edge direction, (row, col)
        rr, cc, val = line_aa(int(round(c - dr)), int(round(c - dc)), int(round(c + dr)), int(round(c + dc)))
        keep = (rr >= 0) & (rr < cell_px) & (cc >= 0) & (cc < cell_px)
        np.maximum.at(stamps[b], (rr[keep], cc[keep]), val[keep].astype(np.float32))
    return stamps


def render_glyphs(hist: np.ndarray | torch.Tensor, cell_px: int = 12) -> np.ndarray:
    """Per-cell histograms (nbins, Hc, Wc), values >= 0 (1 = full brightness) -> image (Hc*px, Wc*px)
    in [0, 1].

    Negative values (a regression head may predict them) count as 0.
    """
    if isinstance(hist, torch.Tensor):
        hist = hist.detach().float().cpu().numpy()
    hist = np.clip(np.asarray(hist, dtype=np.float32), 0.0, None)        # (nbins, Hc, Wc)
    nbins, hc, wc = hist.shape
    stamps = glyph_stamps(nbins, cell_px)                                # (nbins, px, px)
    img = np.einsum("bhw,bij->hiwj", hist, stamps)                       # (Hc, px, Wc, px)
    return np.clip(img.reshape(hc * cell_px, wc * cell_px), 0.0, 1.0)


def patches_to_cells(x: torch.Tensor, grid: tuple[int, int], in_chans: int = 3, nbins: int = 9,
                     cells_per_patch: int = 2) -> torch.Tensor:
    """Inverse of HOGGenerator.to_patches: (B, Hp*Wp, C*nbins*k*k) -> (B, C, nbins, Hp*k, Wp*k)."""
    b = x.shape[0]
    hp, wp = grid
    k = cells_per_patch
    x = x.reshape(b, hp, wp, in_chans * nbins, k, k)                     # (B, Hp, Wp, C*nbins, k, k)
    x = x.permute(0, 3, 1, 4, 2, 5)                                      # (B, C*nbins, Hp, k, Wp, k)
    return x.reshape(b, in_chans, nbins, hp * k, wp * k)
