"""torch.distributed set-up from torchrun's environment; nccl on GPU, gloo on CPU."""
from __future__ import annotations

import os
import random
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    control_group: object = None   # a gloo group for host-side flags (no GPU sync)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def print_main(self, message: str) -> None:
        """A line on stderr from the main process only (one line per job, not one per rank)."""
        if self.is_main:
            print(message, file=sys.stderr, flush=True)


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "cpu" or (pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("train.device: cuda requested but no GPU is available (use train.device=cpu)")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device_pref: str = "auto") -> DistEnv:
    """One process per device as started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    env = DistEnv(rank, world, local_rank, device)
    if world > 1:
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
        env.control_group = dist.new_group(backend="gloo") if device.type == "cuda" else dist.group.WORLD
    return env


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank when ``flag`` is True on any rank (host-side, over gloo)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=env.control_group)
    return bool(t.item())


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier(group=env.control_group)


def cleanup(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed_session(device_pref: str = "auto"):
    """``with distributed_session(pref) as env:`` a command's process group, always torn down."""
    env = init_distributed(device_pref)
    try:
        yield env
    finally:
        cleanup(env)


def seed_everything(seed: int, rank: int = 0) -> None:
    """Same seed on every rank for weights (DDP also broadcasts), distinct streams per rank."""
    s = seed + rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
