"""Labelled images for fine-tuning, linear probing and k-NN: a class-folder tree, an
mmpretrain list file, or IDX files (Fashion-MNIST), with timm's train / eval transforms.

The ``data`` section keys read here: source (folder | list | idx | fashion-mnist | shards), root,
train_split / val_split (folder: sub-folder; list: image prefix under root; idx: file
prefix, 'val' also finds 't10k'), train_ann_file / val_ann_file (list), train_subset /
val_subset (0 = all), mean, std, crop_pct, interpolation, max_image_pixels.

Class folders: the train split's sorted folder names define the class indices and the val
split's folders are mapped to them by name (``load_splits``), so a val split that lacks a class
keeps the right labels; a val folder that is not a train class, or an image lying outside the
class folders, is a one-line error.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from timm.data.transforms_factory import transforms_imagenet_train
from torch.utils.data import Dataset
from torchvision.transforms.v2.functional import to_pil_image

from ..errors import UserError
from .file_index import FileIndex
from .folder_scan import scan_folder
from .idx import FASHION_MNIST_CLASSES, IDX_SOURCES, load_idx_split
from .images import DEFAULT_MAX_IMAGE_PIXELS, decode_rgb, decode_rgb_bytes, max_image_pixels
from .list_file import read_list_file
from .shard_source import shard_set
from .shard_stream import ShardStream

LABELLED_SOURCES = ("folder", "list") + IDX_SOURCES      # files; data.source=shards: see build_labelled_datasets


@dataclass
class LabelledSplit:
    """Images as files (a ``FileIndex``) or as a uint8 array (N, H, W[, C]), with int labels (N,)."""
    name: str
    labels: np.ndarray
    classes: list[str]
    files: FileIndex | None = None
    array: np.ndarray | None = None
    origin: np.ndarray = field(default=None)   # index of each sample in the full split
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS   # files whose header claims more pixels are unreadable

    def __post_init__(self):
        if self.origin is None:
            self.origin = np.arange(len(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return max(len(self.classes), int(self.labels.max()) + 1)

    def describe(self, i: int) -> str:
        return self.files.path(i) if self.files is not None else f"{self.name}[{self.origin[i]}]"

    def image(self, i: int) -> Image.Image:
        """RGB PIL image of sample ``i`` (ValueError when a file cannot be decoded or is too large)."""
        if self.array is not None:
            im = Image.fromarray(self.array[i].squeeze(-1) if self.array.ndim == 4 and self.array.shape[-1] == 1
                                 else self.array[i])
            return im.convert("RGB")
        return to_pil_image(decode_rgb(self.files.path(i), self.max_pixels))

    def subset(self, n: int, seed: int) -> "LabelledSplit":
        """A fixed random subset of ``n`` samples (all when n <= 0 or n >= len)."""
        keep = subset_indices(len(self), n, seed)
        if keep is None:
            return self
        return replace(self, labels=self.labels[keep], files=self.files.subset(keep) if self.files is not None else None,
                       array=self.array[keep] if self.array is not None else None, origin=self.origin[keep])


def subset_indices(total: int, n: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a fixed random subset of ``n`` of ``total`` samples; None = all."""
    if n <= 0 or n >= total:
        return None
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def _subset_seed(which: str) -> int:
    return 1234 + (which == "val")


def _file_split(data: dict, which: str, classes: list[str] | None) -> tuple[FileIndex, list[str]]:
    """A folder or list split's files and class names (folders: ``classes`` = the train split's, if given)."""
    source, split = data["source"], data[f"{which}_split"]
    if not data["root"]:
        raise UserError(f"data.root: required for data.source={source}")
    root = Path(data["root"]).absolute()
    if source == "list":
        files = read_list_file(root, data[f"{which}_ann_file"], key=f"data.{which}_ann_file",
                               require_labels=True, prefix=split)
        return files, []
    files = scan_folder(root / split, classes=classes)
    if not files.classes:
        raise UserError(f"data.root: {root / split} has no class sub-folders; labelled data needs "
                        "one sub-folder per class")
    stray = np.flatnonzero(files.labels < 0)
    if len(stray):
        raise UserError(f"data.root: {files.path(int(stray[0]))} lies outside the class sub-folders of {root / split} "
                        f"({len(stray)} such image(s)); a labelled image's class is its folder: move or remove them")
    return files, files.classes


def load_split(data: dict, which: str, classes: list[str] | None = None) -> LabelledSplit:
    """The 'train' or 'val' split described by the ``data`` section, subset applied. Class folders
    are numbered by ``classes`` (the train split's names) when given, else by their sorted names."""
    source, split = data["source"], data[f"{which}_split"]
    if source in IDX_SOURCES:
        images, labels = load_idx_split(data, split)
        names = FASHION_MNIST_CLASSES if source == "fashion-mnist" else []
        out = LabelledSplit(f"{source}:{split}", labels, names, array=images)
    elif source in ("folder", "list"):
        files, names = _file_split(data, which, classes)
        out = LabelledSplit(f"{source}:{split}", files.labels, names, files=files, max_pixels=max_image_pixels(data))
    else:
        raise UserError(f"data.source: unknown source {source!r}; choose {', '.join(LABELLED_SOURCES)} or shards")
    return out.subset(data[f"{which}_subset"], seed=_subset_seed(which))


def load_splits(data: dict) -> tuple[LabelledSplit, LabelledSplit]:
    """(train, val): the val split's class folders take the train split's class indices, by name."""
    train = load_split(data, "train")
    return train, load_split(data, "val", classes=train.classes or None)


def classification_transform(data: dict, img_size: int, train: bool, aug: dict | None = None):
    """timm's transforms. Train: RandomResizedCrop + flip (+ RandAugment, then colour jitter, then
    random erasing when ``aug`` asks); eval: resize to img_size / crop_pct, centre crop.

    Colour jitter follows RandAugment as in mmpretrain's MaskFeat fine-tuning (SPEC section 4);
    timm alone would drop it whenever RandAugment is on (DeiT / MAE: set aug.color_jitter=0)."""
    common = dict(input_size=img_size, interpolation=data["interpolation"],
                  mean=tuple(data["mean"]), std=tuple(data["std"]))
    if not train:
        return create_transform(is_training=False, crop_pct=data["crop_pct"], **common)
    aug = aug or {}
    common["img_size"] = common.pop("input_size")
    return transforms_imagenet_train(         # what create_transform(is_training=True) calls, + force_color_jitter
        scale=tuple(aug.get("scale", (0.08, 1.0))), ratio=tuple(aug.get("ratio", (3 / 4, 4 / 3))),
        hflip=aug.get("hflip", 0.5), auto_augment=aug.get("auto_augment") or None,
        color_jitter=aug.get("color_jitter") or None, force_color_jitter=True, re_prob=aug.get("re_prob", 0.0),
        re_mode=aug.get("re_mode", "pixel"), re_count=aug.get("re_count", 1), **common)


class LabelledSample:
    """Sample ``index`` of ``epoch`` from its image: {'images': float (3, S, S) normalised, 'label',
    'index'}. A random transform's choices (python, numpy and torch generators) are seeded by
    (seed, epoch, index), so the stream does not depend on workers or ranks. Files
    (``LabelledDataset``) and shards make items with it; ``label_map`` renumbers stored labels
    (a val split's shards numbered by its own class list -> the train split's)."""

    def __init__(self, transform, seed: int = 0, random_transform: bool = True, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 label_map: np.ndarray | None = None):
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
        if self.label_map is not None:
            label = int(self.label_map[label])
        return self(to_pil_image(decode_rgb_bytes(data, self.max_pixels)), label, index, epoch)


class LabelledDataset(Dataset):
    """Items {'images': float (3, S, S) normalised, 'label', 'index', 'valid', 'bad', 'bad_paths'}.

    Keys are (index, epoch) pairs from ``EpochSampler``; see ``LabelledSample`` for the seeding.

    Unreadable files (undecodable, or a header over data.max_image_pixels) are counted in 'bad'
    and named in 'bad_paths'. ``replace_bad=True`` (training): the next readable sample takes the
    place, with its own label, as in pre-training (the Trainer names each file once and applies
    data.max_bad_fraction). ``replace_bad=False`` (evaluation): the item keeps its place with a
    blank image and 'valid' False, so that batches still collate and the evaluation leaves it out;
    no other sample ever stands in for it.
    """

    def __init__(self, split: LabelledSplit, transform, seed: int = 0, random_transform: bool = True,
                 replace_bad: bool = True):
        self.split, self.transform, self.seed = split, transform, seed
        self.sample = LabelledSample(transform, seed, random_transform)
        self.replace_bad = replace_bad

    def __len__(self) -> int:
        return len(self.split)

    def _try(self, i: int, bad: list[str]) -> Image.Image | None:
        try:
            return self.split.image(i)
        except (OSError, ValueError, RuntimeError) as e:
            bad.append(f"{self.split.describe(i)} ({str(e).splitlines()[0][:80]})")
            return None

    def _load(self, index: int) -> tuple[Image.Image | None, int, list[str]]:
        """(image or None when unreadable and not replaced, its label, names of the unreadable files met)."""
        bad, n = [], len(self.split)
        if not self.replace_bad:
            return self._try(index, bad), int(self.split.labels[index]), bad
        for k in range(min(n, 16)):
            i = (index + k) % n
            img = self._try(i, bad)
            if img is not None:
                return img, int(self.split.labels[i]), bad
        raise UserError(f"data: {len(bad)} images in a row failed to decode, e.g. {bad[0]}")

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        img, label, bad = self._load(index)
        item = self.sample(img, label, index, epoch) if img is not None else self.sample.blank(index, epoch, label)
        return {**item, "valid": img is not None, "bad": len(bad), "bad_paths": "\n".join(bad)}


@dataclass
class ShardSplit:
    """What the labelled commands ask of a streamed split (``num_classes``, ``len``), from its manifest."""
    name: str
    classes: list[str]
    num_classes: int
    size: int

    def __len__(self) -> int:
        return self.size


def _label_map(classes: list[str], train_classes: list[str], where: str) -> np.ndarray:
    """Stored label -> the train split's index of the same class name; an unknown class is an error."""
    index = {c: i for i, c in enumerate(train_classes)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise UserError(f"{where}: class {unknown[0]!r} is not a class of the train split")
    return np.array([index[c] for c in classes], dtype=np.int64)


def labelled_shards(data: dict, which: str, sample: LabelledSample, seed: int,
                    train_classes: list[str] | None = None, evaluation: bool = False) -> ShardStream:
    """The split's shards (root/<split>/ or data.shards with '{split}'), subset applied, streamed; with
    ``train_classes`` the split's labels are renumbered by class name as the train split's."""
    split = data[f"{which}_split"]
    shards = shard_set(data, "image", split)
    m = shards.manifest
    if train_classes and m.classes and m.classes != train_classes:
        sample.label_map = _label_map(m.classes, train_classes, f"data.shards ({split})")
    chosen = subset_indices(m.total, data[f"{which}_subset"], _subset_seed(which))
    keep = None
    if chosen is not None:
        keep = np.zeros(m.total, dtype=bool)
        keep[chosen] = True
    classes = train_classes or m.classes
    info = ShardSplit(f"shards:{split}", classes, max(m.num_classes, len(classes)),
                      m.total if keep is None else len(chosen))
    return ShardStream(shards, sample.from_bytes, seed, data["shuffle_buffer"], keep=keep, split=info,
                       blank=sample.blank if evaluation else None)


def build_labelled_datasets(data: dict, train_tf, val_tf, seed: int, training: bool) -> tuple:
    """(train, val) data sets of the ``data`` section, the val split's classes numbered as the train
    split's: files or arrays (map-style ``LabelledDataset``s) or shards (``ShardStream``s), both with
    ``.split.num_classes``. ``training``: the train set replaces an unreadable sample by the next
    readable one (counted); evaluation sets mark it invalid instead (left out, counted)."""
    if data["source"] == "shards":
        pixels = max_image_pixels(data)
        train = labelled_shards(data, "train", LabelledSample(train_tf, seed, training, pixels), seed,
                                evaluation=not training)
        val = labelled_shards(data, "val", LabelledSample(val_tf, seed, False, pixels), seed,
                              train_classes=train.split.classes, evaluation=True)
        return train, val
    train_split, val_split = load_splits(data)
    return (LabelledDataset(train_split, train_tf, seed, random_transform=training, replace_bad=training),
            LabelledDataset(val_split, val_tf, seed, random_transform=False, replace_bad=False))


class FeatureDataset(Dataset):
    """Pre-computed features (N, D) with labels (N,): items {'features', 'label', 'index'}."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key) -> dict:
        index = key[0] if isinstance(key, tuple) else key
        return {"features": self.features[index], "label": int(self.labels[index]), "index": index}
