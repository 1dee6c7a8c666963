"""Distributed, resumable sampling that tells the dataset which epoch it is in."""
from __future__ import annotations

from torch.utils.data import DistributedSampler, Sampler


class EpochSampler(Sampler):
    """torch's DistributedSampler, yielding (index, epoch) keys and able to skip
    the first ``skip`` samples of this rank's share (to resume mid-epoch)."""

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True):
        self.inner = DistributedSampler(range(length), num_replicas=num_replicas, rank=rank,
                                        shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner) - self.skip

    def __iter__(self):
        for n, index in enumerate(self.inner):
            if n >= self.skip:
                yield index, self.epoch
