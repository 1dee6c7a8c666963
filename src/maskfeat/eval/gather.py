"""Per-sample results from every rank, put back in dataset order."""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..engine.distributed import DistEnv


def _all_gather_padded(t: torch.Tensor) -> list[torch.Tensor]:
    """all_gather of tensors whose first dim may differ between ranks."""
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    out = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(out, padded)
    return [o[: int(s.item())] for o, s in zip(out, sizes)]


def gather_by_index(index: torch.Tensor, values: torch.Tensor, total: int, env: DistEnv) -> torch.Tensor:
    """index (n,) and values (n, ...) of this rank -> (total, ...) on every rank, row i = sample i.

    DistributedSampler pads the last shard by repeating samples; a repeated index only
    overwrites its row with the same value, so every sample counts once.
    """
    if env.distributed:
        index = torch.cat(_all_gather_padded(index))
        values = torch.cat(_all_gather_padded(values))
    out = torch.zeros((total, *values.shape[1:]), dtype=values.dtype, device=values.device)
    seen = torch.zeros(total, dtype=torch.bool, device=values.device)
    out[index] = values
    seen[index] = True
    if not bool(seen.all()):
        raise RuntimeError(f"gather_by_index: {int((~seen).sum())} of {total} samples have no result")
    return out


def gather_objects(obj, env: DistEnv) -> list:
    """``obj`` (small and picklable) of every rank, in rank order; [obj] without a process group."""
    if not env.distributed:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
