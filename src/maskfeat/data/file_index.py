"""A lean index of image files: paths and labels in numpy arrays, no Python object per file.

A ``list[Path]`` of ImageNet's 1.28M files is ~0.9 GB of Python objects, and every read of
one from a forked DataLoader worker writes its reference count, so each worker slowly gets
its own copy of the pages it touches (copy-on-read, pytorch/pytorch#13246). ``FileIndex``
keeps the relative paths' bytes end to end in one uint8 array with int64 offsets and int64
labels: three buffers that workers only read, so they stay shared (~60 MB for ImageNet).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np


class FileIndex:
    """``path(i)`` = ``root`` joined with the bytes ``blob[offsets[i]:offsets[i + 1]]``; ``label(i)``
    = ``labels[i]`` (-1: none); ``classes``: the class names labels index (may be empty); ``notes``:
    what the scan that built it left out (e.g. symbolic links it did not follow)."""

    def __init__(self, root: str, blob: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
                 classes: Sequence[str] = (), notes: Sequence[str] = ()):
        if len(offsets) != len(labels) + 1:
            raise ValueError(f"FileIndex: {len(offsets)} offsets for {len(labels)} labels")
        self.root = os.fspath(root)
        self.blob = np.ascontiguousarray(blob, dtype=np.uint8)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.classes, self.notes = list(classes), list(notes)

    @classmethod
    def from_names(cls, names: Iterable, labels: Iterable[int] | None = None, root: str = "",
                   classes: Sequence[str] = (), notes: Sequence[str] = ()) -> "FileIndex":
        """From path strings (or Paths) relative to ``root`` ('' = as given); labels default to -1."""
        names = [os.fspath(n) for n in names]
        joined = np.frombuffer(os.fsencode("\0".join(names)), dtype=np.uint8)   # one encode, not one per name
        bounds = np.concatenate(([-1], np.flatnonzero(joined == 0), [len(joined)])) if names else np.zeros(1)
        if len(bounds) != len(names) + 1:
            raise ValueError("FileIndex: a name contains a NUL byte")
        offsets = np.zeros(len(names) + 1, dtype=np.int64)
        np.cumsum(np.diff(bounds) - 1, out=offsets[1:])
        lab = np.full(len(names), -1, np.int64) if labels is None else np.asarray(list(labels), np.int64)
        return cls(root, joined[joined != 0], offsets, lab, classes, notes)

    def __len__(self) -> int:
        return len(self.labels)

    def relative(self, i: int) -> str:
        return os.fsdecode(self.blob[self.offsets[i]:self.offsets[i + 1]].tobytes())

    def path(self, i: int) -> str:
        rel = self.relative(i)
        return os.path.join(self.root, rel) if self.root else rel

    def label(self, i: int) -> int:
        return int(self.labels[i])

    def subset(self, keep) -> "FileIndex":
        """The entries ``keep`` (indices, in the order given), as a new compact index."""
        keep = np.asarray(keep, dtype=np.int64)
        starts, ends = self.offsets[keep], self.offsets[keep + 1]
        offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=offsets[1:])
        blob = (self.blob[ranges_mask(starts, ends, len(self.blob))] if _is_sorted(keep) else
                np.concatenate([self.blob[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
                               or [self.blob[:0]]))
        return FileIndex(self.root, blob, offsets, self.labels[keep], self.classes, self.notes)

    @property
    def nbytes(self) -> int:
        return self.blob.nbytes + self.offsets.nbytes + self.labels.nbytes

    def __repr__(self) -> str:
        return f"FileIndex({len(self)} files under {self.root!r}, {self.nbytes / 2**20:.1f} MiB)"


def _is_sorted(keep: np.ndarray) -> bool:
    return bool(len(keep) < 2 or (np.diff(keep) > 0).all())


def ranges_mask(starts: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """bool (n,): True inside any of the disjoint, ascending ranges [starts[k], ends[k])."""
    full = ends > starts                          # non-empty ranges: their starts (and ends) are distinct
    delta = np.zeros(n + 1, dtype=np.int8)        # the running sum is 0 or 1: int8 holds it
    delta[starts[full]] += 1
    delta[ends[full]] -= 1
    return np.cumsum(delta[:n], dtype=np.int8).view(np.bool_)
