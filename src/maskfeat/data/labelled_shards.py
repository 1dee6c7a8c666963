"""A labelled split stored as shards (data.source=shards), streamed, subset applied and labels renumbered
by class name as the train split's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .labelled_sample import LabelledSample
from .labelled_splits import subset_seed
from .shard_source import shard_set
from .shard_stream import ShardStream
from .sources import subset_indices


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
    chosen = subset_indices(m.total, data[f"{which}_subset"], subset_seed(which))
    keep = None
    if chosen is not None:
        keep = np.zeros(m.total, dtype=bool)
        keep[chosen] = True
    classes = train_classes or m.classes
    info = ShardSplit(f"shards:{split}", classes, max(m.num_classes, len(classes)),
                      m.total if keep is None else len(chosen))
    return ShardStream(shards, sample.from_bytes, seed, data["shuffle_buffer"], keep=keep, split=info,
                       blank=sample.blank if evaluation else None)
