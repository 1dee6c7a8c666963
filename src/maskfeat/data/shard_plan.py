"""Which samples of a shard set each rank and loader worker reads in one epoch, in which order.

The epoch's order: the shards in manifest order, or permuted by (seed, epoch) when shuffling
(the same on every rank), each shard's samples in their stored order, restricted to the samples
kept (all, or a subset). Rank r takes the r-th contiguous piece of that order; the rank's piece is
cut into batches and worker w takes a contiguous run of whole batches. The split is at sample
granularity, so shard counts need not divide ranks x workers: a worker whose piece starts inside a
shard reads over (without decoding) the samples before it, at most one shard per worker and epoch.

Training (``drop_last``): every rank gets the same number of full batches,
floor(kept / (world x batch)) x batch samples; the < world x batch samples at the end of the
epoch's order are not used that epoch (other ones each epoch when the shard order is shuffled).
Evaluation: every sample once, ranks differ by at most one sample, the last batch may be short.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Layout:
    rank: int
    world: int
    workers: int        # loader workers per rank (0 = the main process reads: one slot)
    batch: int
    drop_last: bool
    shuffle: bool
    seed: int


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(num_shards)
    return np.random.default_rng([seed, epoch, 0x5A4D]).permutation(num_shards)


def epoch_order(counts: np.ndarray, keep: np.ndarray | None, seed: int, epoch: int,
                shuffle: bool) -> np.ndarray:
    """Global indices of the epoch's kept samples in reading order (``keep``: bool per sample, None = all)."""
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = shard_order(len(counts), seed, epoch, shuffle)
    g = np.concatenate([offsets[s] + np.arange(counts[s]) for s in order] or [np.zeros(0, np.int64)])
    return g if keep is None else g[keep[g]]


def rank_piece(kept: int, layout: Layout) -> tuple[int, int]:
    """[start, stop) of this rank's samples within the epoch's order."""
    if layout.drop_last:
        per_rank = kept // (layout.world * layout.batch) * layout.batch
        return layout.rank * per_rank, (layout.rank + 1) * per_rank
    bounds = np.linspace(0, kept, layout.world + 1).round().astype(int)
    return int(bounds[layout.rank]), int(bounds[layout.rank + 1])


def samples_per_rank(kept: int, layout: Layout) -> int:
    start, stop = rank_piece(kept, layout)
    return stop - start


def worker_batches(samples: int, layout: Layout) -> list[int]:
    """Batches of each worker: a rank's batches dealt in contiguous runs, the first workers one more."""
    slots = max(layout.workers, 1)
    total = -(-samples // layout.batch)
    return [total // slots + (w < total % slots) for w in range(slots)]


def worker_piece(samples: int, worker: int, layout: Layout) -> tuple[int, int]:
    """[start, stop) of a worker's samples within its rank's piece."""
    batches = worker_batches(samples, layout)
    start = sum(batches[:worker]) * layout.batch
    return start, min(start + batches[worker] * layout.batch, samples)


def consumed_batches(batches: list[int], done: int) -> tuple[list[int], int]:
    """(how many of each worker's batches are among the first ``done`` batches a DataLoader yields,
    the worker whose batch comes next). Its workers take turns, one batch each, a worker dropping out
    when it has no batch left. A resumed DataLoader starts again with its worker 0, so that worker
    must play the one whose batch comes next (and worker i the i-th after it)."""
    out = [0] * len(batches)
    turns = [(w, rnd) for rnd in range(max(batches, default=0)) for w, n in enumerate(batches) if n > rnd]
    for w, _ in turns[:done]:
        out[w] += 1
    return out, (turns[done][0] if done < len(turns) else 0)


def worker_plan(counts: np.ndarray, keep: np.ndarray | None, epoch: int, worker: int,
                layout: Layout) -> np.ndarray:
    """Global indices this worker reads in ``epoch``, in reading order."""
    order = epoch_order(counts, keep, layout.seed, epoch, layout.shuffle)
    start, stop = rank_piece(len(order), layout)
    w_start, w_stop = worker_piece(stop - start, worker, layout)
    return order[start + w_start:start + w_stop]


def shuffle_buffer(items, size: int, rng: np.random.Generator):
    """Items in a random order drawn through a buffer of ``size`` (0 or 1: unchanged)."""
    if size <= 1:
        yield from items
        return
    buf = []
    for x in items:
        if len(buf) < size:
            buf.append(x)
            continue
        j = int(rng.integers(size))
        yield buf[j]
        buf[j] = x
    for j in rng.permutation(len(buf)):
        yield buf[j]
