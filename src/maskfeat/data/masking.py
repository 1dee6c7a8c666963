"""BEiT-style block-wise mask generator (SPEC section 1).

Made per sample in the data loader from a seeded ``numpy.random.Generator``,
so a sample's mask depends only on (seed, epoch, index), not on worker layout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BlockMaskGenerator:
    """Masks exactly ``num_masking_patches`` cells of an (height, width) grid with random blocks.

    Each block: area ~ U(min_num_patches, remaining), aspect ~ log-U(min_aspect, max_aspect),
    h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)), h < height, w < width,
    top ~ U{0..height-h}, left ~ U{0..width-w} (inclusive, unlike mmpretrain's numpy
    randint); a block is accepted when it adds 1..remaining new cells.
    """

    input_size: tuple[int, int] = (14, 14)
    mask_ratio: float = 0.4
    min_num_patches: int = 15
    max_num_patches: int | None = None
    min_aspect: float = 0.3
    max_aspect: float | None = None
    max_rounds: int = 1000
    log_aspect: tuple[float, float] = field(init=False)

    def __post_init__(self):
        if isinstance(self.input_size, int):
            self.input_size = (self.input_size, self.input_size)
        self.input_size = tuple(self.input_size)
        h, w = self.input_size
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask.ratio must be in (0, 1), got {self.mask_ratio}")
        self.num_patches = h * w
        self.num_masking_patches = int(round(self.num_patches * self.mask_ratio))
        if self.max_num_patches is None:
            self.max_num_patches = self.num_masking_patches
        max_aspect = self.max_aspect or 1.0 / self.min_aspect
        self.log_aspect = (math.log(self.min_aspect), math.log(max_aspect))

    def _try_block(self, mask: np.ndarray, remaining: int, rng: np.random.Generator,
                   blocks: list | None) -> int:
        height, width = self.input_size
        for _ in range(10):
            # U(min, remaining)
            area = self.min_num_patches + (remaining - self.min_num_patches) * rng.random()
            aspect = math.exp(rng.uniform(*self.log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if 0 < h < height and 0 < w < width:
                top = int(rng.integers(0, height - h, endpoint=True))
                left = int(rng.integers(0, width - w, endpoint=True))
                block = mask[top:top + h, left:left + w]
                new = h * w - int(block.sum())
                if 0 < new <= remaining:
                    block[...] = True
                    if blocks is not None:
                        blocks.append(dict(top=top, left=left, h=h, w=w, area=area, aspect=aspect,
                                           remaining=remaining))
                    return new
        return 0

    def __call__(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """One (height, width) bool mask with exactly ``num_masking_patches`` True cells."""
        return self.generate(rng)[0]

    def generate(self, rng: np.random.Generator | None = None,
                 record: bool = False) -> tuple[np.ndarray, list]:
        """The mask and, with ``record``, the accepted blocks (top, left, h, w, drawn area/aspect)."""
        rng = rng if rng is not None else np.random.default_rng()
        mask = np.zeros(self.input_size, dtype=bool)
        blocks: list | None = [] if record else None
        count = 0
        for _ in range(self.max_rounds):
            if count >= self.num_masking_patches:
                break
            remaining = min(self.num_masking_patches - count, self.max_num_patches)
            count += self._try_block(mask, remaining, rng, blocks)
        if count < self.num_masking_patches:  # astronomically rare: top up with single cells
            top_up(mask, self.num_masking_patches - count, rng)
        return mask, blocks or []


def top_up(mask: np.ndarray, missing: int, rng: np.random.Generator) -> None:
    """Mask ``missing`` more cells of ``mask`` (in place), drawn uniformly from the free ones."""
    free = np.flatnonzero(~mask)
    mask.flat[rng.choice(free, missing, replace=False)] = True
