"""Labelled images and the k-NN classifier's keys, shared by the evaluation jobs and by pre-training's
k-NN monitor (``monitor.data`` is this section)."""
from __future__ import annotations

from .common import LOADER, MAX_IMAGE_PIXELS, NORMALISE, SHARDS
from .spec import COUNT, POSITIVE, POSITIVE_INT, SUB_FOLDER, choice, key, number

# Labelled images, shared by the three evaluation jobs (see maskfeat.data.labelled).
LABELLED_DATA = {
    "source": key("fashion-mnist", None,
                  "folder | list (mmpretrain list file) | idx | fashion-mnist | shards"),
    "root": key("", None, "folder: root/<split>/<class>/...; list: data_root; idx: folder of IDX files; "
                "shards: root/<split>/"),
    "train_split": key("train", SUB_FOLDER,
                       "folder: sub-folder; list: image prefix under root; idx: file prefix"),
    "val_split": key("val", SUB_FOLDER, "idx: 'val' also finds 't10k-*' (MNIST-style test files)"),
    "train_ann_file": key("meta/train.txt", None, "list: 'relative/path label' lines, relative to root"),
    "val_ann_file": key("meta/val.txt", None, "as train_ann_file, for the validation split"),
    "train_subset": key(0, COUNT, "use a fixed random subset of this many samples (0 = all)"),
    "val_subset": key(0, COUNT, "as train_subset, for the validation split"),
    **NORMALISE,
    "interpolation": key("bicubic", choice("bicubic", "bilinear", "nearest", "random"),
                         "resize interpolation"),
    "crop_pct": key(1.0, number(0, 1, lo_open=True), "eval: resize to img_size / crop_pct, centre crop "
                    "(ImageNet: 0.875)"),
    **LOADER,
    "max_image_pixels": key(MAX_IMAGE_PIXELS, COUNT, "images whose header claims more pixels are unreadable "
                            "(0 = no limit)"),
    "shuffle": key(True, None, "training split: false = in the data set's order (evaluation always is)"),
    **SHARDS,
}

POOL = key("cls", choice("cls", "avg"), "cls token | avg of patch tokens (after the final norm)")

KNN = {"k": key(20, POSITIVE_INT, "neighbours voting"),
       "temperature": key(0.07, POSITIVE, "vote weight exp(similarity / temperature)")}
