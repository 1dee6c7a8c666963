"""Labelled image data sets for fine-tuning, linear probing and k-NN: files or arrays (map-style) or shards
(streamed), from the reader table (``sources``); splits: ``labelled_splits``; transforms:
``timm_transforms``; the per-sample draw: ``labelled_sample``; bad files: ``bad_samples``.
"""
from __future__ import annotations

from torch.utils.data import Dataset

from .bad_samples import counted, read_skipping
from .images import max_image_pixels
from .labelled_sample import LabelledSample
from .labelled_shards import labelled_shards
from .labelled_splits import LabelledSplit, load_splits
from .sources import reader


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

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        img, i, bad = read_skipping(index, len(self.split), self.split.image, self.split.describe,
                                    "images in a row failed to decode", skip=self.replace_bad)
        label = int(self.split.labels[i])
        sample = self.sample
        item = sample.blank(index, epoch, label) if img is None else sample(img, label, index, epoch)
        return counted({**item, "valid": img is not None}, bad)


def build_labelled_datasets(data: dict, train_tf, val_tf, seed: int, training: bool) -> tuple:
    """(train, val) data sets of the ``data`` section, the val split's classes numbered as the train
    split's: files or arrays (map-style ``LabelledDataset``s) or shards (``ShardStream``s), both with
    ``.split.num_classes``. ``training``: the train set replaces an unreadable sample by the next
    readable one (counted); evaluation sets mark it invalid instead (left out, counted)."""
    if reader(data, "image", labelled=True).read is None:          # streamed: shards
        pixels = max_image_pixels(data)
        train = labelled_shards(data, "train", LabelledSample(train_tf, seed, training, pixels), seed,
                                evaluation=not training)
        val = labelled_shards(data, "val", LabelledSample(val_tf, seed, False, pixels), seed,
                              train_classes=train.split.classes, evaluation=True)
        return train, val
    train_split, val_split = load_splits(data)
    return (LabelledDataset(train_split, train_tf, seed, random_transform=training, replace_bad=training),
            LabelledDataset(val_split, val_tf, seed, random_transform=False, replace_bad=False))
