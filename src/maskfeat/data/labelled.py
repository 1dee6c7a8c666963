"""Labelled images for fine-tuning, linear probing and k-NN: a class-folder tree, an
mmpretrain list file, or IDX files (Fashion-MNIST), with timm's train / eval transforms.

The ``data`` section keys read here: source (folder | list | idx | fashion-mnist), root,
train_split / val_split (folder: sub-folder; list: image prefix under root; idx: file
prefix, 'val' also finds 't10k'), train_ann_file / val_ann_file (list), train_subset /
val_subset (0 = all), mean, std, crop_pct, interpolation.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import to_pil_image

from ..errors import UserError
from .idx import FASHION_MNIST_CLASSES, IDX_SOURCES, load_idx_split
from .images import decode_rgb, decode_rgb_bytes, read_list_file, scan_folder
from .shard_source import shard_set
from .shard_stream import ShardStream

LABELLED_SOURCES = ("folder", "list") + IDX_SOURCES      # files; data.source=shards: see build_labelled_dataset


@dataclass
class LabelledSplit:
    """Images as file paths or as a uint8 array (N, H, W[, C]), with int labels (N,)."""
    name: str
    labels: np.ndarray
    classes: list[str]
    paths: list[Path] | None = None
    array: np.ndarray | None = None
    origin: np.ndarray = field(default=None)   # index of each sample in the full split

    def __post_init__(self):
        if self.origin is None:
            self.origin = np.arange(len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return max(len(self.classes), int(self.labels.max()) + 1)

    def describe(self, i: int) -> str:
        return str(self.paths[i]) if self.paths is not None else f"{self.name}[{self.origin[i]}]"

    def image(self, i: int) -> Image.Image:
        """RGB PIL image of sample ``i`` (ValueError when a file cannot be decoded)."""
        if self.array is not None:
            im = Image.fromarray(self.array[i].squeeze(-1) if self.array.ndim == 4 and self.array.shape[-1] == 1
                                 else self.array[i])
            return im.convert("RGB")
        return to_pil_image(decode_rgb(self.paths[i]))

    def subset(self, n: int, seed: int) -> "LabelledSplit":
        """A fixed random subset of ``n`` samples (all when n <= 0 or n >= len)."""
        keep = subset_indices(len(self), n, seed)
        if keep is None:
            return self
        return LabelledSplit(self.name, self.labels[keep], self.classes,
                             [self.paths[i] for i in keep] if self.paths is not None else None,
                             self.array[keep] if self.array is not None else None, self.origin[keep])


def subset_indices(total: int, n: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a fixed random subset of ``n`` of ``total`` samples; None = all."""
    if n <= 0 or n >= total:
        return None
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def _subset_seed(which: str) -> int:
    return 1234 + (which == "val")


def load_split(data: dict, which: str) -> LabelledSplit:
    """The 'train' or 'val' split described by the ``data`` section, subset applied."""
    source, split = data["source"], data[f"{which}_split"]
    if source in IDX_SOURCES:
        images, labels = load_idx_split(data, split)
        classes = FASHION_MNIST_CLASSES if source == "fashion-mnist" else []
        out = LabelledSplit(f"{source}:{split}", labels, classes, array=images)
    elif source in ("folder", "list"):
        if not data["root"]:
            raise UserError(f"data.root: required for data.source={source}")
        root = Path(data["root"]).absolute()
        if source == "folder":
            paths, labels, classes = scan_folder(root / split)
            if not classes:
                raise UserError(f"data.root: {root / split} has no class sub-folders; labelled data needs "
                                "one sub-folder per class")
        else:
            paths, labels = read_list_file(root / split, root / data[f"{which}_ann_file"])
            if min(labels) < 0:
                raise UserError(f"data.{which}_ann_file: {root / data[f'{which}_ann_file']} has lines without "
                                "a label ('relative/path label' expected)")
            classes = []
        out = LabelledSplit(f"{source}:{split}", np.asarray(labels, dtype=np.int64), classes, paths=paths)
    else:
        raise UserError(f"data.source: unknown source {source!r}; choose {', '.join(LABELLED_SOURCES)} or shards")
    return out.subset(data[f"{which}_subset"], seed=_subset_seed(which))


def classification_transform(data: dict, img_size: int, train: bool, aug: dict | None = None):
    """timm's transforms. Train: RandomResizedCrop + flip (+ RandAugment, colour jitter,
    random erasing when ``aug`` asks); eval: resize to img_size / crop_pct, centre crop."""
    common = dict(input_size=img_size, interpolation=data["interpolation"],
                  mean=tuple(data["mean"]), std=tuple(data["std"]))
    if not train:
        return create_transform(is_training=False, crop_pct=data["crop_pct"], **common)
    aug = aug or {}
    return create_transform(
        is_training=True, scale=tuple(aug.get("scale", (0.08, 1.0))),
        ratio=tuple(aug.get("ratio", (3 / 4, 4 / 3))), hflip=aug.get("hflip", 0.5),
        auto_augment=aug.get("auto_augment") or None,
        color_jitter=aug.get("color_jitter") or None, re_prob=aug.get("re_prob", 0.0),
        re_mode=aug.get("re_mode", "pixel"), re_count=aug.get("re_count", 1), **common)


class LabelledSample:
    """Sample ``index`` of ``epoch`` from its image: {'images': float (3, S, S) normalised, 'label',
    'index'}. A random transform's choices (python, numpy and torch generators) are seeded by
    (seed, epoch, index), so the stream does not depend on workers or ranks. Files
    (``LabelledDataset``) and shards make items with it."""

    def __init__(self, transform, seed: int = 0, random_transform: bool = True):
        self.transform, self.seed = transform, seed
        self.random_transform = random_transform    # False: a deterministic (eval) transform, no seeding

    def __call__(self, img: Image.Image, label: int, index: int, epoch: int) -> dict:
        return {"images": self._transform(img, index, epoch), "label": label, "index": index}

    def _transform(self, img: Image.Image, index: int, epoch: int) -> torch.Tensor:
        if not self.random_transform:
            return self.transform(img)
        py_state, np_state = random.getstate(), np.random.get_state()   # timm draws from both
        try:
            seed = hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF
            random.seed(seed)
            np.random.seed(seed & 0xFFFF_FFFF)
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)   # CPU only (torch.manual_seed also queues CUDA seeds, ~1 ms)
                return self.transform(img)                  # (3, S, S) float, normalised
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    def from_bytes(self, data: bytes, label: int, index: int, epoch: int) -> dict:
        """A shard's sample (an image file's bytes and its '.cls' label)."""
        if label < 0:
            raise ValueError("no label ('.cls' member)")
        return self(to_pil_image(decode_rgb_bytes(data)), label, index, epoch)


class LabelledDataset(Dataset):
    """Items {'images': float (3, S, S) normalised, 'label', 'index', 'bad', 'bad_paths'}.

    Keys are (index, epoch) pairs from ``EpochSampler``; see ``LabelledSample`` for the seeding.
    An undecodable file is replaced by the next one (and named in 'bad_paths').
    """

    def __init__(self, split: LabelledSplit, transform, seed: int = 0, random_transform: bool = True):
        self.split, self.transform, self.seed = split, transform, seed
        self.sample = LabelledSample(transform, seed, random_transform)

    def __len__(self) -> int:
        return len(self.split)

    def _load(self, index: int) -> tuple[Image.Image, int, list[str]]:
        bad, n = [], len(self.split)
        for k in range(min(n, 16)):
            i = (index + k) % n
            try:
                return self.split.image(i), int(self.split.labels[i]), bad
            except (OSError, ValueError, RuntimeError) as e:
                bad.append(f"{self.split.describe(i)} ({str(e).splitlines()[0][:80]})")
        raise RuntimeError(f"16 images in a row failed to decode, e.g. {bad[0]}")

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        img, label, bad = self._load(index)
        return {**self.sample(img, label, index, epoch), "bad": len(bad), "bad_paths": "\n".join(bad)}


@dataclass
class ShardSplit:
    """What the labelled commands ask of a streamed split (``num_classes``, ``len``), from its manifest."""
    name: str
    classes: list[str]
    num_classes: int
    size: int

    def __len__(self) -> int:
        return self.size


def labelled_shards(data: dict, which: str, transform, seed: int, random_transform: bool) -> ShardStream:
    """The split's shards (root/<split>/ or data.shards with '{split}'), subset applied, streamed."""
    split = data[f"{which}_split"]
    shards = shard_set(data, "image", split)
    m = shards.manifest
    chosen = subset_indices(m.total, data[f"{which}_subset"], _subset_seed(which))
    keep = None
    if chosen is not None:
        keep = np.zeros(m.total, dtype=bool)
        keep[chosen] = True
    info = ShardSplit(f"shards:{split}", m.classes, m.num_classes, m.total if keep is None else len(chosen))
    sample = LabelledSample(transform, seed, random_transform)
    return ShardStream(shards, sample.from_bytes, seed, data["shuffle_buffer"], keep=keep, split=info)


def _file_dataset(data: dict, which: str, transform, seed: int, random_transform: bool) -> LabelledDataset:
    return LabelledDataset(load_split(data, which), transform, seed, random_transform=random_transform)


def build_labelled_dataset(data: dict, which: str, transform, seed: int = 0, random_transform: bool = True):
    """The 'train' or 'val' data set of the ``data`` section: files or arrays (a map-style
    ``LabelledDataset``) or shards (a ``ShardStream``); both have ``.split.num_classes``."""
    builder = {"shards": labelled_shards}.get(data["source"], _file_dataset)
    return builder(data, which, transform, seed, random_transform)


class FeatureDataset(Dataset):
    """Pre-computed features (N, D) with labels (N,): items {'features', 'label', 'index'}."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key) -> dict:
        index = key[0] if isinstance(key, tuple) else key
        return {"features": self.features[index], "label": int(self.labels[index]), "index": index}
