"""The mask on the token grid: a mask on a coarser grid (the cube mask's 8x7x7, or the block
mask's patch grid itself) upsampled to the grid of an encoder's tokens and flattened."""
from __future__ import annotations

import math

import torch


def upsample_mask(mask: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Nearest upsampling of a (B, *grid) mask to (B, *size), any rank; each size must divide evenly."""
    b, *grid = mask.shape
    if len(grid) != len(size):
        raise ValueError(f"mask must be (B, {len(size)} grid axes) for the token grid {tuple(size)}, "
                         f"got shape {tuple(mask.shape)}")
    for dim, (src, dst) in enumerate(zip(grid, size)):
        if dst % src:
            raise ValueError(f"mask grid {tuple(grid)} does not divide the token grid {tuple(size)}")
        if dst != src:
            mask = mask.repeat_interleave(dst // src, dim=dim + 1)
    return mask


def token_mask(mask: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """(B, *mask grid) mask, or an already flat (B, prod(grid)) one -> (B, N) bool on ``grid``,
    tokens in raster order (True = masked)."""
    grid = tuple(grid)
    if mask.dim() == 2 and len(grid) > 1:
        if mask.shape[1] != math.prod(grid):
            raise ValueError(f"mask of {mask.shape[1]} tokens for a token grid {grid}")
        return mask.bool()
    return upsample_mask(mask.bool(), grid).flatten(1)                  # (B, N)
