"""The one policy for bad samples (undecodable, header over data.max_image_pixels, a video unreadable
or too short, a shard member missing): skip, count, name. Every data set goes through it.

- Training, map-style (``read_skipping``): sample i's place is taken by the next readable sample
  (i + 1, i + 2, ... modulo the data set, at most ``MAX_SKIPS`` tried); ``MAX_SKIPS`` bad in a row stop
  the run with one line naming the first.
- Training, streaming (``stream_training``): a bad sample's place is taken by the last good sample of
  the stream (its random draws still made for the bad sample's index), so that every rank keeps the
  same number of batches; ``MAX_SKIPS`` bad samples before any good one stop the run.
- Evaluation (``read_skipping(..., skip=False)``, ``stream_evaluation``): the sample keeps its place
  as a blank item with 'valid' False, which the evaluation leaves out and counts; no other sample
  ever stands in for it.

Items carry 'bad' (1 when the sample this item stands for, its own index, was bad, else 0: a bad
neighbour met in its skip chain is counted when its own index is drawn, so each bad sample is counted
once per draw) and 'bad_paths' (the names of every bad sample met, one a line: '<file or shard:key>
(<first line of the error>)'); the Trainer names each once and applies data.max_bad_fraction.
"""
from __future__ import annotations

from ..errors import UserError

MAX_SKIPS = 16
SAMPLE_ERRORS = (OSError, ValueError, RuntimeError)
NAME_WIDTH = 120          # characters of the error kept in a bad sample's name


def bad_name(name: str, error: Exception) -> str:
    return f"{name} ({str(error).splitlines()[0][:NAME_WIDTH]})"


def too_many(bad: list[str], what: str) -> UserError:
    """``what``: e.g. 'files in a row failed to decode'."""
    return UserError(f"data: {len(bad)} {what}, e.g. {bad[0]}")


def counted(item: dict, bad: list[str]) -> dict:
    """``item`` + 'bad' / 'bad_paths' for the chain ``bad`` of ``read_skipping`` (which starts at the
    item's own index: a non-empty chain means that index was bad)."""
    return {**item, "bad": int(bool(bad)), "bad_paths": "\n".join(bad)}


def read_skipping(index: int, n: int, read, name, what: str = "files in a row failed to decode",
                  errors: tuple = SAMPLE_ERRORS, skip: bool = True) -> tuple[object, int, list[str]]:
    """(``read(i)``, i, names of the bad samples met) for the first readable i of index, index + 1, ...
    (mod ``n``); ``name(i)`` names sample i. ``skip=False`` (evaluation): only ``index`` is tried and an
    unreadable one gives (None, index, [its name])."""
    bad: list[str] = []
    for k in range(min(n, MAX_SKIPS) if skip else 1):
        i = (index + k) % n
        try:
            return read(i), i, bad
        except errors as e:
            bad.append(bad_name(name(i), e))
    if not skip:
        return None, index, bad
    raise too_many(bad, what)


def _make(make, raw, index: int, epoch: int) -> dict:
    if raw.error:
        raise ValueError(raw.error)
    return make(raw.payload, raw.label, index, epoch)


def stream_training(samples, make, epoch: int):
    """Items ``make(payload, label, index, epoch)`` + 'index', 'bad', 'bad_paths' of ``samples`` =
    (index, raw, name) with raw.payload / .label / .error and ``name()`` naming it; see the module doc."""
    last_good, pending = None, []
    for index, raw, name in samples:
        try:
            item = _make(make, raw, index, epoch)
        except SAMPLE_ERRORS as e:
            pending.append((index, bad_name(name(), e)))
            if last_good is None and len(pending) >= MAX_SKIPS:
                raise too_many([why for _, why in pending], "samples in a row are unusable") from None
            if last_good is not None:
                yield from _substitutes(make, last_good, pending, epoch)
                pending = []
            continue
        last_good = raw
        yield from _substitutes(make, raw, pending, epoch)
        pending = []
        yield {**item, "index": index, "bad": 0, "bad_paths": ""}
    if pending:
        raise too_many([why for _, why in pending], "samples in a row are unusable")


def _substitutes(make, good, pending: list, epoch: int):
    for index, why in pending:
        yield {**make(good.payload, good.label, index, epoch), "index": index, "bad": 1, "bad_paths": why}


def stream_evaluation(samples, make, blank, epoch: int):
    """Every sample of ``samples`` (as in ``stream_training``) in its place: an unusable one as
    ``blank(index, epoch)`` with 'valid' False."""
    for index, raw, name in samples:
        try:
            item = {**_make(make, raw, index, epoch), "valid": True, "bad": 0, "bad_paths": ""}
        except SAMPLE_ERRORS as e:
            item = {**blank(index, epoch), "valid": False, "bad": 1, "bad_paths": bad_name(name(), e)}
        yield {**item, "index": index}
