"""Pre-training samples: random-resized crop + flip of an image, and its block mask.

Every random choice of a sample is seeded by (seed, epoch, index), so the stream is
the same whatever the number of workers or ranks, and a resumed run sees the very
batches an uninterrupted run would have seen. The crop is drawn from the image size
alone (``draw_crop``) and applied apart (``apply_crop``), so the CPU path and the
device-decoding path (``data.decode=device``, see ``device_decode``) cut the same crops.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from .bad_samples import counted, read_skipping
from .file_index import FileIndex
from .images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    check_pixels,
    decode_rgb,
    decode_rgb_bytes,
    device_jpeg_info,
)
from .masking import BlockMaskGenerator
from .seeding import seeded_sample

DECODE_MODES = ("cpu", "device")


def draw_crop(seed: int, epoch: int, index: int, height: int, width: int, scale, ratio,
              hflip: float) -> tuple[int, int, int, int, bool]:
    """(top, left, h, w, flip) of sample ``index`` in ``epoch`` for an image of ``height`` x ``width``:
    torchvision's RandomResizedCrop.get_params, then the flip draw, under a generator seeded by
    (seed, epoch, index). Needs only the image size, never its pixels."""
    with seeded_sample(seed, epoch, index):
        dummy = torch.empty(()).expand(3, height, width)          # shape only: no memory behind it
        top, left, h, w = RandomResizedCrop.get_params(dummy, list(scale), list(ratio))
        flip = bool(torch.rand(()) < hflip)
    return int(top), int(left), int(h), int(w), flip


def apply_crop(img: torch.Tensor, box, flip: bool, size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, size, size): crop ``box`` = (top, left, h, w), bicubic antialiased
    resize, horizontal flip if ``flip``. On any device."""
    top, left, h, w = (int(v) for v in box)
    out = TF.resized_crop(img, top, left, h, w, [size, size], interpolation=InterpolationMode.BICUBIC,
                          antialias=True)
    return TF.horizontal_flip(out) if flip else out


class PretrainCrop:
    """SPEC section 1: RandomResizedCrop(bicubic) + horizontal flip; uint8 in, uint8 out,
    every draw seeded by (seed, epoch, index)."""

    def __init__(self, size: int, scale, ratio, hflip: float):
        self.size, self.scale, self.ratio, self.hflip = size, tuple(scale), tuple(ratio), hflip

    def draw(self, seed: int, epoch: int, index: int, height: int, width: int) -> tuple:
        return draw_crop(seed, epoch, index, height, width, self.scale, self.ratio, self.hflip)

    def apply(self, img: torch.Tensor, box: tuple) -> torch.Tensor:
        """``box`` = (top, left, h, w, flip) from ``draw``."""
        return apply_crop(img, box[:4], box[4], self.size)


def pretrain_transform(img_size: int, scale, ratio, hflip: float) -> PretrainCrop:
    return PretrainCrop(img_size, scale, ratio, hflip)


class PretrainSample:
    """Sample ``index`` of ``epoch`` from its decoded image: 'images' (the crop) and 'mask', each
    seeded by (seed, epoch, index). Files (``PretrainDataset``) and shards make items with it."""

    def __init__(self, transform: PretrainCrop, mask_generator: BlockMaskGenerator | None, seed: int = 0,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.transform, self.mask_generator, self.seed = transform, mask_generator, seed
        self.max_pixels = max_pixels    # a header claiming more pixels makes the sample unreadable

    def crop(self, img: torch.Tensor, index: int, epoch: int) -> torch.Tensor:
        box = self.transform.draw(self.seed, epoch, index, img.shape[-2], img.shape[-1])
        return self.transform.apply(img, box)

    def add_mask(self, item: dict, index: int, epoch: int) -> dict:
        if self.mask_generator is not None:
            with seeded_sample(self.seed, epoch, index) as rng:
                item["mask"] = torch.from_numpy(self.mask_generator(rng))
        return item

    def from_bytes(self, data: bytes, label: int, index: int, epoch: int) -> dict:
        """A shard's sample (an image file's bytes; the label is not used) -> {'images', 'mask'}."""
        return self.add_mask({"images": self.crop(decode_rgb_bytes(data, self.max_pixels), index, epoch)},
                             index, epoch)


class PretrainDataset(Dataset):
    """Keys are (index, epoch) pairs from ``EpochSampler``; items are dicts of
    'images' uint8 (3, S, S), 'mask' bool (Hp, Wp), 'bad' int (files skipped), 'bad_paths' str.

    The files are a ``FileIndex`` (a list of paths is turned into one): no Python object per file,
    so forked loader workers share it. ``length`` may exceed the number of files (an endless
    stream cut into epochs): index i reads file i mod len(index). Undecodable files, and images
    whose header claims more than ``max_pixels`` pixels, are skipped (the next file is read
    instead), counted and named.

    ``decode='device'``: JPEGs are not decoded here. An item carries instead 'jpeg' (the file's
    bytes, uint8 1-D), 'box' int64 (top, left, h, w, flip) drawn from the upright size in the JPEG header,
    'orient' (its EXIF orientation) and 'path'; ``device_decode.DeviceDecoder`` decodes them on the
    training device, turns them upright and crops them there.
    Files that are not plain JPEGs (PNG, CMYK, truncated, ...; see ``images.device_jpeg_info``)
    are decoded and cropped here as in the CPU path: their item has 'images' and an empty 'jpeg'.
    """

    def __init__(self, files: FileIndex | Sequence, transform: PretrainCrop,
                 mask_generator: BlockMaskGenerator | None, seed: int = 0, length: int | None = None,
                 cache: bool = False, decode: str = "cpu", max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        if decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {DECODE_MODES}, not {decode!r}")
        self.files = files if isinstance(files, FileIndex) else FileIndex.from_names(files)
        self.transform, self.mask_generator = transform, mask_generator
        self.seed, self.length = seed, length or len(self.files)
        self.sample = PretrainSample(transform, mask_generator, seed)
        self.decode, self.max_pixels = decode, max_pixels
        self._cache: dict | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def _read(self, i: int) -> torch.Tensor:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img = decode_rgb(self.files.path(i), self.max_pixels)
        if self._cache is not None:
            self._cache[i] = img
        return img

    def _read_encoded(self, i: int):
        """(bytes uint8 1-D, (H, W, EXIF orientation)) for a JPEG the device decodes; else the decoded
        uint8 (3, H, W)."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        data = Path(self.files.path(i)).read_bytes()
        info = device_jpeg_info(data)
        if info:
            check_pixels(*info[:2], self.max_pixels)
        got = (torch.frombuffer(bytearray(data), dtype=torch.uint8), info) if info else \
            decode_rgb_bytes(data, self.max_pixels)
        if self._cache is not None:
            self._cache[i] = got
        return got

    def _load(self, index: int, read) -> tuple[object, list[str], int]:
        got, i, bad = read_skipping(index, len(self.files), read, self.files.path)
        return got, bad, i

    def load(self, index: int) -> tuple[torch.Tensor, list[str]]:
        img, bad, _ = self._load(index, self._read)
        return img, bad

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if self.decode == "device":
            item = self._encoded_item(index, epoch)
        else:
            img, bad = self.load(index)
            item = counted({"images": self.sample.crop(img, index, epoch)}, bad)
        return self.sample.add_mask(item, index, epoch)

    def _encoded_item(self, index: int, epoch: int) -> dict:
        got, bad, i = self._load(index, self._read_encoded)
        if isinstance(got, tuple):                      # the device rotates it upright, then crops
            data, (height, width, orientation) = got
            img = None
            if orientation >= 5:
                height, width = width, height
        else:
            data, img, orientation = torch.empty(0, dtype=torch.uint8), got, 1
            height, width = img.shape[-2:]
        box = self.transform.draw(self.seed, epoch, index, height, width)
        item = counted({"jpeg": data, "box": torch.tensor(box, dtype=torch.int64),
                        "path": self.files.path(i), "orient": orientation}, bad)
        if img is not None:
            item["images"] = self.transform.apply(img, box)
        return item
