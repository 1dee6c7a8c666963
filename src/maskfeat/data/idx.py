"""IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw.

An IDX file is a 4-byte magic (0, 0, type code, number of dims), the dims as big-endian
uint32, then the values, big-endian. Fashion-MNIST ships as four such files; Debian's
package ``dataset-fashion-mnist`` installs them in /usr/share/datasets/fashion-mnist.
"""
from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .file_index import FileIndex
from .pretrain_dataset import PretrainDataset

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HINT = ("install Debian's package dataset-fashion-mnist "
                      "(apt-get install dataset-fashion-mnist), "
                      f"which puts it in {FASHION_MNIST_ROOT}, "
                      "or set data.root to a folder holding the IDX files")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
IDX_SOURCES = ("idx", "fashion-mnist")
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# split name -> file prefixes tried in order (MNIST-style sets call their test split 't10k')
_SPLIT_PREFIXES = {"val": ("val", "t10k", "test"), "test": ("test", "t10k"), "t10k": ("t10k",)}


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (gzip or raw, by content) -> array in native byte order."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _DTYPES:
        raise UserError(f"{path}: not an IDX file (magic {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: IDX header truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    count = math.prod(dims)
    if len(raw) != header + count * dtype.itemsize:
        raise UserError(f"{path}: IDX payload is {len(raw) - header} bytes, dims {dims} need "
                        f"{count * dtype.itemsize}")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _find(root: Path, prefix: str, kind: str, rank: int) -> Path | None:
    for sep in ("-", "."):
        for suffix in (".gz", ""):
            p = root / f"{prefix}-{kind}{sep}idx{rank}-ubyte{suffix}"
            if p.is_file():
                return p
    return None


def idx_root(data: dict) -> Path:
    """data.root, or Fashion-MNIST's Debian location for data.source=fashion-mnist."""
    if data["root"]:
        return Path(data["root"])
    if data["source"] == "fashion-mnist":
        return FASHION_MNIST_ROOT
    raise UserError("data.root: required for data.source=idx "
                    "(a folder of <split>-images-idx3-ubyte[.gz] files)")


def find_idx_split(root: str | Path, split: str, hint: str = "") -> tuple[Path, Path]:
    """(images, labels) files of ``split`` under ``root``; 'val' and 'test' also find 't10k'."""
    root = Path(root)
    for prefix in _SPLIT_PREFIXES.get(split, (split,)):
        images, labels = _find(root, prefix, "images", 3), _find(root, prefix, "labels", 1)
        if images and labels:
            return images, labels
    where = f"{root}/{split}-images-idx3-ubyte[.gz] and {split}-labels-idx1-ubyte[.gz]"
    raise UserError(f"data.root: IDX files not found: {where}" + (f"; {hint}" if hint else ""))


def load_idx_split(data: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W[, C]) and int64 labels (N,) of one split."""
    hint = FASHION_MNIST_HINT if data["source"] == "fashion-mnist" else ""
    images_path, labels_path = find_idx_split(idx_root(data), split, hint)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise UserError(f"{images_path}: expected uint8 images (N, H, W[, C]), "
                        f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"{labels_path}: {labels.shape} labels for {len(images)} images")
    return images, labels.astype(np.int64)


def array_to_rgb(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) -> uint8 (3, H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(image))
    if t.dim() == 2:
        return t.unsqueeze(0).expand(3, -1, -1).contiguous()
    if t.shape[-1] == 1:
        t = t.expand(*t.shape[:2], 3)
    return t.permute(2, 0, 1).contiguous()


class ArrayPretrainDataset(PretrainDataset):
    """Pre-training samples from images held in memory (an IDX file) instead of image files."""

    def __init__(self, images: np.ndarray, transform, mask_generator, seed: int = 0, name: str = "idx"):
        super().__init__(FileIndex.from_names(f"{name}[{i}]" for i in range(len(images))), transform,
                         mask_generator, seed=seed)
        self.images = images

    def _read(self, i: int) -> torch.Tensor:
        return array_to_rgb(self.images[i])
