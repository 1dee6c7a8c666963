"""Streaming a shard set: the IterableDataset each loader worker reads, and its DataLoader.

Every sample keeps its global index (its place in the manifest; with a subset, its place in the
subset), and ``make(payload, label, index, epoch)`` seeds its random choices by (seed, epoch,
index) as the file sources do: with shuffling off and one reader the batches equal the folder
source's. Shuffling permutes the shard order per epoch and draws samples through a buffer seeded
by (seed, epoch, rank, worker).

Resume: the per-epoch order of every worker is a function of (seed, epoch, ranks, workers,
batch, buffer), so ``set_epoch(epoch, skip)`` makes each worker pass over (read, never decode)
the samples it had already delivered: a resumed run sees exactly the batches an uninterrupted
one would, given the same number of ranks, workers, batch size and buffer (except that a bad
sample just after the resume point is replaced by the next good sample, not the previous one).

A sample that cannot be used (undecodable, missing member or label, not in the tar, command
failed) is named by shard and key and goes through the one bad-sample policy (``bad_samples``:
``stream_training`` replaces it by the worker's last good sample, ``stream_evaluation`` keeps its
place as a blank item with 'valid' False).
"""
from __future__ import annotations

import copy
import itertools
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..engine.device import pin_memory
from ..errors import UserError
from .bad_samples import stream_evaluation, stream_training
from .shard_plan import (
    Layout,
    consumed_batches,
    samples_per_rank,
    shuffle_buffer,
    worker_batches,
    worker_plan,
)
from .shard_source import RawSample, ShardSet, read_shard


class ShardStream(IterableDataset):
    """Items ``make(payload bytes, label, index, epoch)`` plus 'index', 'bad' and 'bad_paths' (see the
    module doc).

    ``keep``: bool per manifest sample (a subset) or None; ``split``: what the labelled commands ask of
    a data set's split (``num_classes``), or None."""

    def __init__(self, shards: ShardSet, make, seed: int, buffer: int, keep: np.ndarray | None = None,
                 split=None, blank=None):
        self.shards, self.make, self.seed, self.buffer = shards, make, seed, buffer
        self.keep, self.split = keep, split
        # evaluation: blank(index, epoch) keeps an unusable sample's place, 'valid' False
        self.blank = blank
        self.local = None if keep is None else np.cumsum(keep) - 1      # global -> index in the subset
        self.layout: Layout | None = None
        self._state = torch.zeros(2, dtype=torch.int64)                   # epoch, samples to skip

    def __len__(self) -> int:
        return self.shards.manifest.total if self.keep is None else int(self.keep.sum())

    def with_layout(self, layout: Layout) -> "ShardStream":
        """A copy read as one rank of ``layout`` (its epoch / skip state shared with the workers)."""
        out = copy.copy(self)
        out.layout, out._state = layout, torch.zeros(2, dtype=torch.int64).share_memory_()
        return out

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self._state[0], self._state[1] = epoch, skip

    def __iter__(self):
        info = get_worker_info()
        slot = info.id if info is not None else 0
        epoch, skip = (int(v) for v in self._state)
        lay = self.layout
        batches = worker_batches(samples_per_rank(len(self), lay), lay)
        done, first = consumed_batches(batches, skip // lay.batch)
        worker = (first + slot) % len(batches)          # the part of the epoch's plan this worker plays
        plan = worker_plan(self.shards.manifest.counts, self.keep, epoch, worker, lay)
        rng = np.random.default_rng([lay.seed, epoch, lay.rank, worker, 0xB0F])
        samples = shuffle_buffer(self._read(plan), self.buffer if lay.shuffle else 0, rng)
        return self._items(itertools.islice(samples, done[worker] * lay.batch, None), epoch)

    def _read(self, plan: np.ndarray):
        """(global index, RawSample, shard) of the plan's samples, reading each shard once, in plan order
        (a shard's samples are one run of the plan, in stored order)."""
        offsets = self.shards.manifest.offsets
        shard_of = np.searchsorted(offsets, plan, side="right") - 1
        for run in np.split(np.arange(len(plan)), np.flatnonzero(np.diff(shard_of)) + 1):
            if not len(run):
                continue
            shard = int(shard_of[run[0]])
            wanted = plan[run]
            for g, raw in zip(wanted.tolist(),
                              read_shard(self.shards, shard, (wanted - offsets[shard]).tolist())):
                yield g, raw, shard

    def _index(self, g: int) -> int:
        return g if self.local is None else int(self.local[g])

    def _items(self, samples, epoch: int):
        """The plan's items under the bad-sample policy (``bad_samples``: training or evaluation)."""
        named = ((self._index(g), raw, partial(self._name, raw, shard)) for g, raw, shard in samples)
        if self.blank is not None:
            return stream_evaluation(named, self.make, self.blank, epoch)
        return stream_training(named, self.make, epoch)

    def _name(self, raw: RawSample, shard: int) -> str:
        src = f" [{raw.src}]" if raw.src else ""
        return f"{self.shards.urls[shard]}:{raw.key}{src}"


class ShardLoader(DataLoader):
    """The DataLoader of one rank over a ``ShardStream``, with the Trainer's loader interface
    (``samples_per_rank``, ``set_epoch(epoch, skip)``); ``len()`` = this rank's batches."""

    def __init__(self, stream: ShardStream, batch_size: int, data: dict, rank: int, world: int,
                 shuffle: bool = True, drop_last: bool = True, collate_fn=None):
        workers = data["num_workers"]
        layout = Layout(rank, world, workers, batch_size, drop_last, shuffle, stream.seed)
        if drop_last and samples_per_rank(len(stream), layout) < batch_size:
            raise UserError(f"data: {len(stream)} samples are fewer than one global batch "
                            f"({batch_size} x {world} processes)")
        super().__init__(stream.with_layout(layout), batch_size=batch_size, num_workers=workers,
                         pin_memory=pin_memory(data["pin_memory"]),
                         persistent_workers=data["persistent_workers"] and workers > 0, drop_last=drop_last,
                         prefetch_factor=4 if workers > 0 else None, collate_fn=collate_fn)

    @property
    def samples_per_rank(self) -> int:
        return samples_per_rank(len(self.dataset), self.dataset.layout)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.dataset.set_epoch(epoch, skip)

    def __len__(self) -> int:
        n, b = self.samples_per_rank, self.dataset.layout.batch
        return n // b if self.drop_last else -(-n // b)
