"""torch.distributed set-up from torchrun's environment: the device of engine.device per local rank,
the process-group backend of ``dist.backend`` (auto: torch's default for the device type, gloo on CPU)."""
from __future__ import annotations

import os
import random
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .device import backend_for, process_group_device, select_device


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


def pick_device(pref: str | dict, local_rank: int = 0, key: str = "train") -> torch.device:
    """The device of a config section (``device``, ``device_modules``) or a device string."""
    return select_device(pref, local_rank, key)


def init_distributed(device_pref: str | dict = "auto", dist_cfg: dict | None = None,
                     key: str = "train") -> DistEnv:
    """One process per device as started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank, key)
    env = DistEnv(rank, world, local_rank, device)
    if world > 1:
        backend = backend_for(device, (dist_cfg or {}).get("backend", "auto"))
        if not dist.is_initialized():
            dist.init_process_group(backend, device_id=process_group_device(device))
        env.control_group = dist.group.WORLD if backend == "gloo" else dist.new_group(backend="gloo")
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
def distributed_session(device_pref: str | dict = "auto", dist_cfg: dict | None = None, key: str = "train"):
    """``with distributed_session(cfg["train"], cfg["dist"]) as env:`` a command's process group
    (``key``: the device section's name, for messages), always torn down."""
    env = init_distributed(device_pref, dist_cfg, key)
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
