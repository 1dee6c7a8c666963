"""Unreadable evaluation samples: left out of the numbers (never replaced by another sample),
counted, named once, and bounded by ``data.max_bad_fraction``.

Evaluation datasets (``LabelledDataset(replace_bad=False)``) give an unreadable file a blank
image with 'valid' False and its name in 'bad_paths'. The passes over them (feature extraction,
``metrics.evaluate``) collect the names per rank with ``note_unreadable``, merge them across ranks
by sample index (``gather_unreadable``: padded shards name a sample once) and report how many
samples the result stands on (``coverage``).
"""
from __future__ import annotations

import torch

from ..engine.distributed import DistEnv
from ..errors import UserError
from .gather import gather_objects


def valid_of(batch: dict) -> torch.Tensor:
    """bool (B,): which samples of the batch were read (all, for batches without a 'valid' key)."""
    if "valid" in batch:
        return torch.as_tensor(batch["valid"], dtype=torch.bool)
    return torch.ones(len(batch["index"]), dtype=torch.bool)


def note_unreadable(batch: dict, found: dict[int, str]) -> None:
    """Add {sample index: 'path (reason)'} of the batch's unreadable samples to ``found``."""
    valid = valid_of(batch)
    if bool(valid.all()):
        return
    names = batch.get("bad_paths") or [""] * len(valid)
    for k in torch.nonzero(~valid).flatten().tolist():
        found[int(batch["index"][k])] = names[k] or f"sample {int(batch['index'][k])}"


def gather_unreadable(found: dict[int, str], env: DistEnv) -> dict[int, str]:
    """Every rank's ``found`` merged, on every rank, sorted by sample index."""
    merged: dict[int, str] = {}
    for part in gather_objects(found, env):
        merged.update(part)
    return dict(sorted(merged.items()))


def check_bad_fraction(unreadable: dict[int, str], total: int, limit: float, what: str) -> None:
    """UserError naming examples when more than ``limit`` of the ``total`` samples are unreadable."""
    if total and len(unreadable) > limit * total:
        examples = ", ".join(list(unreadable.values())[:3])
        raise UserError(f"data: {len(unreadable)} of {total} {what} images are unreadable "
                        f"(> data.max_bad_fraction={limit}), e.g. {examples}")


def coverage(samples: int, total: int, what: str) -> str:
    """'on 95 of 100 val images (5 unreadable skipped)', or 'on 100 val images' when none was skipped."""
    if samples == total:
        return f"on {total} {what} images"
    return f"on {samples} of {total} {what} images ({total - samples} unreadable skipped)"
