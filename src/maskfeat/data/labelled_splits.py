"""The labelled commands' splits (fine-tuning, linear probe, k-NN) from the reader table (``sources``).

The ``data`` section keys read here: source (folder | list | idx | fashion-mnist; shards: see
``labelled_shards``), root, train_split / val_split (folder: sub-folder; list: image prefix under root;
idx: file prefix, 'val' also finds 't10k'), train_ann_file / val_ann_file (list), train_subset /
val_subset (0 = all), max_image_pixels.

Class folders: the train split's sorted folder names define the class indices and the val split's
folders are mapped to them by name (``load_splits``), so a val split that lacks a class keeps the
right labels; a val folder that is not a train class, or an image lying outside the class folders,
is a one-line error. Integer labels (list files) in the val split that the train split lacks are
counted and named in a one-line warning (``note_unseen_labels``; the class count covers them, as
for video).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import DataWarning
from .sources import Listing, Want, listing

LabelledSplit = Listing          # a labelled split is a listing whose samples all have labels


def subset_seed(which: str) -> int:
    """The seed of a split's fixed random subset (data.<which>_subset)."""
    return 1234 + (which == "val")


def load_split(data: dict, which: str, classes: list[str] | None = None) -> Listing:
    """The 'train' or 'val' split described by the ``data`` section, subset applied. Class folders
    are numbered by ``classes`` (the train split's names) when given, else by their sorted names."""
    out = listing(data, "image", Want(which, f"{which}_ann_file", labelled=True, classes=classes))
    return out.subset(data[f"{which}_subset"], seed=subset_seed(which))


def load_splits(data: dict) -> tuple[Listing, Listing]:
    """(train, val): the val split's class folders take the train split's class indices, by name."""
    train = load_split(data, "train")
    val = load_split(data, "val", classes=train.classes or None)
    key = "data.val_ann_file" if data["source"] == "list" else "data.val_split"
    note_unseen_labels(train.labels, val.labels, key)
    return train, val


def note_unseen_labels(train_labels, val_labels, key: str) -> int:
    """Warn (one line naming ``key``) when val labels are absent from the train labels: they are
    counted (the class count covers them) but the classifier never saw them. Returns their count."""
    train_labels, val_labels = np.asarray(train_labels), np.asarray(val_labels)
    unseen = np.setdiff1d(val_labels, train_labels)
    n = int(np.isin(val_labels, unseen).sum())
    if n:
        warnings.warn(DataWarning(f"{key}: {n} val samples have labels the train split lacks (e.g. "
                                  f"{int(unseen[0])}; {len(unseen)} such labels): counted, never predicted "
                                  "right"), stacklevel=2)
    return n
