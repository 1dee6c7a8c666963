"""One labelled image sample: a timm transform seeded per sample, its label and index (files and shards)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import to_pil_image

from .images import DEFAULT_MAX_IMAGE_PIXELS, decode_rgb_bytes
from .seeding import seeded_sample


class LabelledSample:
    """Sample ``index`` of ``epoch`` from its image: {'images': float (3, S, S) normalised, 'label',
    'index'}. A random transform's choices (python, numpy and torch generators) are seeded by
    (seed, epoch, index) (``seeding.seeded_sample``), so the stream does not depend on workers or ranks. Files
    (``LabelledDataset``) and shards make items with it; ``label_map`` renumbers stored labels
    (a val split's shards numbered by its own class list -> the train split's)."""

    def __init__(self, transform, seed: int = 0, random_transform: bool = True,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, label_map: np.ndarray | None = None):
        self.transform, self.seed, self.max_pixels, self.label_map = transform, seed, max_pixels, label_map
        self.random_transform = random_transform    # False: a deterministic (eval) transform, no seeding

    def __call__(self, img: Image.Image, label: int, index: int, epoch: int) -> dict:
        return {"images": self._transform(img, index, epoch), "label": label, "index": index}

    def blank(self, index: int, epoch: int, label: int = 0) -> dict:
        """The stand-in of an unreadable evaluation sample (marked invalid by the caller): same shapes."""
        return {"images": self.transform(Image.new("RGB", (8, 8))), "label": label, "index": index}

    def _transform(self, img: Image.Image, index: int, epoch: int) -> torch.Tensor:
        if not self.random_transform:
            return self.transform(img)
        with seeded_sample(self.seed, epoch, index, global_state=True):    # timm draws from random and numpy
            return self.transform(img)                                      # (3, S, S) float, normalised

    def from_bytes(self, data: bytes, label: int, index: int, epoch: int) -> dict:
        """A shard's sample (an image file's bytes and its '.cls' label)."""
        if label < 0:
            raise ValueError("no label ('.cls' member)")
        if self.label_map is not None:
            label = int(self.label_map[label])
        return self(to_pil_image(decode_rgb_bytes(data, self.max_pixels)), label, index, epoch)
