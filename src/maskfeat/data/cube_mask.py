"""Cube (spatio-temporal block) mask generator for video MaskFeat (SPEC section 5).

Faithful to SlowFast's ``MaskingGenerator3D`` (and mmpretrain's ``MaskFeatMaskGenerator3D``):
each block draws a spatial area ~ U[min_num_patches, max_num_patches], an aspect ratio
~ log-U(min_aspect, max_aspect), h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)),
a temporal length t ~ U{1..T}; it needs h < H and w < W, is placed uniformly (every
position inclusive) and is accepted when it adds 1..remaining new units. Up to
``max_tries`` tries per block; the mask is done when the target count is reached or a
block cannot be placed in ``max_tries`` tries (so a mask may end a few units short,
as in the reference code).

Randomness comes from a ``numpy.random.Generator`` so a sample's mask depends only on
(seed, epoch, index), as for the image masks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .masking import top_up

Block = tuple[int, int, int, int, int, int]   # (front, top, left, t, h, w)


@dataclass
class CubeMaskGenerator:
    """(T, H, W) bool masks with ~``mask_ratio`` of the units in random cubes.

    Defaults are the K400 recipe: 8x7x7 grid (one unit = 2 frames x 32x32 px at 16x224x224),
    157 of 392 units, spatial area U[9, 49], aspect log-U(0.3, 1/0.3), t ~ U{1..8}.
    ``max_num_patches=None`` means H * W (the whole frame). ``exact``: a mask that ends short
    is topped up with single random free units, so every mask has exactly the target count
    (the visible-patch encoder needs it; off by default, as the reference code).
    """

    input_size: tuple[int, int, int] = (8, 7, 7)
    mask_ratio: float = 0.4
    min_num_patches: int = 9
    max_num_patches: int | None = None
    min_aspect: float = 0.3
    max_aspect: float | None = None
    max_tries: int = 100
    exact: bool = False      # top a short mask up with single random units (model.encoder=visible)

    def __post_init__(self):
        size = tuple(int(s) for s in self.input_size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"mask.input_size must be three positive ints (T, H, W), got {self.input_size}")
        if size[1] < 2 or size[2] < 2:
            raise ValueError(f"mask grid {size}: blocks need h < H and w < W, so H and W must be >= 2")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask.ratio must be in (0, 1), got {self.mask_ratio}")
        self.input_size = size
        t, h, w = size
        self.num_units = t * h * w
        self.num_masking_patches = int(round(self.num_units * self.mask_ratio))
        if self.max_num_patches is None:
            self.max_num_patches = h * w
        if not 0 < self.min_num_patches <= self.max_num_patches:
            raise ValueError(f"mask: need 0 < min_num_patches ({self.min_num_patches}) "
                             f"<= max_num_patches ({self.max_num_patches})")
        max_aspect = self.max_aspect or 1.0 / self.min_aspect
        self.log_aspect = (math.log(self.min_aspect), math.log(max_aspect))

    def _place_block(self, mask: np.ndarray, remaining: int, rng: np.random.Generator,
                     blocks: list[Block] | None) -> int:
        """Try up to ``max_tries`` blocks; mask the first one adding 1..remaining units."""
        T, H, W = self.input_size
        for _ in range(self.max_tries):
            area = rng.uniform(self.min_num_patches, self.max_num_patches)
            aspect = math.exp(rng.uniform(*self.log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            t = int(rng.integers(1, T, endpoint=True))
            if not (w < W and h < H):
                continue
            top = int(rng.integers(0, H - h, endpoint=True))
            left = int(rng.integers(0, W - w, endpoint=True))
            front = int(rng.integers(0, T - t, endpoint=True))
            cube = mask[front:front + t, top:top + h, left:left + w]
            new = t * h * w - int(cube.sum())
            if 0 < new <= remaining:
                cube[...] = True
                if blocks is not None:
                    blocks.append((front, top, left, t, h, w))
                return new
        return 0

    def __call__(self, rng: np.random.Generator | None = None,
                 blocks: list[Block] | None = None) -> np.ndarray:
        """One (T, H, W) bool mask; pass a list as ``blocks`` to receive the accepted cubes."""
        rng = rng if rng is not None else np.random.default_rng()
        mask = np.zeros(self.input_size, dtype=bool)
        count = 0
        while count < self.num_masking_patches:
            added = self._place_block(mask, self.num_masking_patches - count, rng, blocks)
            if added == 0:
                break
            count += added
        if self.exact and count < self.num_masking_patches:
            top_up(mask, self.num_masking_patches - count, rng)
        return mask

