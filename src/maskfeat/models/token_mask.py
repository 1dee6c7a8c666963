"""The mask on the token grid: a (B, t, h, w) cube mask upsampled to the encoder's (B, T, H, W)."""
from __future__ import annotations

import torch


def upsample_mask(mask: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Nearest upsampling of a (B, t, h, w) mask to (B, T, H, W); each size must divide evenly."""
    b, *grid = mask.shape
    if len(grid) != 3:
        raise ValueError(f"mask must be (B, T, H, W), got shape {tuple(mask.shape)}")
    for dim, (src, dst) in enumerate(zip(grid, size)):
        if dst % src:
            raise ValueError(f"mask grid {tuple(grid)} does not divide the token grid {tuple(size)}")
        if dst != src:
            mask = mask.repeat_interleave(dst // src, dim=dim + 1)
    return mask
