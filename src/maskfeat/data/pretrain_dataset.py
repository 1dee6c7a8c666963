"""Pre-training samples: random-resized crop + flip of an image, and its block mask.

Every random choice of a sample is seeded by (seed, epoch, index), so the stream is
the same whatever the number of workers or ranks, and a resumed run sees the very
batches an uninterrupted run would have seen.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..masking import BlockMaskGenerator
from .images import decode_rgb


def pretrain_transform(img_size: int, scale, ratio, hflip: float) -> v2.Compose:
    """SPEC section 1: RandomResizedCrop(bicubic) + horizontal flip; uint8 in, uint8 out."""
    return v2.Compose([
        v2.RandomResizedCrop(img_size, scale=tuple(scale), ratio=tuple(ratio),
                             interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(hflip),
    ])


class PretrainDataset(Dataset):
    """Keys are (index, epoch) pairs from ``EpochSampler``; items are dicts of
    'images' uint8 (3, S, S), 'mask' bool (Hp, Wp), 'bad' int (files skipped), 'bad_paths' str.

    ``length`` may exceed the number of files (an endless stream cut into epochs):
    index i reads file i mod len(paths). Undecodable files are skipped (the next file
    is read instead), counted and named.
    """

    def __init__(self, paths: list[Path], transform, mask_generator: BlockMaskGenerator | None,
                 seed: int = 0, length: int | None = None, cache: bool = False):
        self.paths = list(paths)
        self.transform, self.mask_generator = transform, mask_generator
        self.seed, self.length = seed, length or len(self.paths)
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def _read(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = decode_rgb(self.paths[i])
        if self._cache is not None:
            self._cache[i] = img
        return img

    def load(self, index: int) -> tuple[torch.Tensor, list[str]]:
        bad = []
        n = len(self.paths)
        for k in range(min(n, 16)):
            i = (index + k) % n
            try:
                return self._read(i), bad
            except (OSError, ValueError, RuntimeError) as e:
                bad.append(f"{self.paths[i]} ({str(e).splitlines()[0][:80]})")
        raise RuntimeError(f"16 images in a row failed to decode, e.g. {bad[0]}")

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        img, bad = self.load(index)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF)  # CPU only, cheap
            img = self.transform(img)
        item = {"images": img, "bad": len(bad), "bad_paths": "\n".join(bad)}
        if self.mask_generator is not None:
            rng = np.random.default_rng([self.seed, epoch, index])
            item["mask"] = torch.from_numpy(self.mask_generator(rng))
        return item
