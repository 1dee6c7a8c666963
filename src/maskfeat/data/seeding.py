"""The one seeded-sample function: every random choice of sample ``index`` in ``epoch`` is drawn under
generators seeded by (seed, epoch, index) alone, so the stream is the same whatever the number of
loader workers or ranks, and a resumed run sees the very samples an uninterrupted run would have seen.
Every data set (image and video, files and shards, pre-training and labelled) draws through it.
"""
from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch

SEED_MASK = 0x7FFF_FFFF_FFFF


@contextmanager
def seeded_sample(seed: int, epoch: int, index: int, global_state: bool = False):
    """Inside: torch's CPU generator forked and seeded by hash((seed, epoch, index)) (CUDA's generators
    untouched: reseeding them costs ~1 ms and would disturb the training process's own streams when
    items are made there); yields ``np.random.default_rng([seed, epoch, index])``.

    ``global_state`` (timm's transforms draw from python's ``random`` and numpy's global state):
    both are seeded from the same hash too, restored on exit, and the yielded value is None."""
    sample_seed = hash((seed, epoch, index)) & SEED_MASK
    saved = (random.getstate(), np.random.get_state()) if global_state else None
    try:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed)
            if global_state:
                random.seed(sample_seed)
                np.random.seed(sample_seed & 0xFFFF_FFFF)
                yield None
            else:
                yield np.random.default_rng([seed, epoch, index])
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
