"""``--launcher slurm``: one process per ``srun`` task, torch.distributed's env taken from SLURM's.

RANK / WORLD_SIZE / LOCAL_RANK from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID; MASTER_ADDR (unless
set) the job's first node (SLURM_JOB_NODELIST, expanded by ``scontrol show hostnames`` when it is
on PATH, else parsed here); MASTER_PORT as set, else DEFAULT_PORT.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from ..errors import UserError

DEFAULT_PORT = 29500
SLURM_VARS = {"RANK": "SLURM_PROCID", "WORLD_SIZE": "SLURM_NTASKS", "LOCAL_RANK": "SLURM_LOCALID"}


def _split_top(text: str) -> list[str]:
    """Split on the commas outside brackets: 'a[1,2],b' -> ['a[1,2]', 'b']."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def _expand(name: str) -> list[str]:
    """One host pattern, any number of bracket groups: 'gpu[1-2]-ib[01,03]' -> 4 names."""
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", name)
    if m is None:
        return [name]
    head, ranges, tail = m.groups()
    out = []
    for r in ranges.split(","):
        lo, _, hi = r.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            raise UserError(f"SLURM_JOB_NODELIST: cannot read the range {r!r} in {name!r}")
        width = len(lo)                                           # node[01-03]: zero padded
        out += [f"{head}{i:0{width}d}{t}" for i in range(int(lo), int(hi or lo) + 1) for t in _expand(tail)]
    return out


def parse_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list -> host names: 'node[01-03,07],gpu5' -> node01 .. node07, gpu5."""
    if nodelist.count("[") != nodelist.count("]"):
        raise UserError(f"SLURM_JOB_NODELIST: unbalanced brackets in {nodelist!r}")
    return [host for part in _split_top(nodelist.strip()) if part for host in _expand(part)]


def first_node(nodelist: str) -> str:
    """The job's first host: by ``scontrol show hostnames`` when present, else parsed."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
            if out:
                return out[0]
        except (OSError, subprocess.SubprocessError):
            pass
    hosts = parse_nodelist(nodelist)
    if not hosts:
        raise UserError("SLURM_JOB_NODELIST: empty")
    return hosts[0]


def slurm_env(environ: dict | None = None) -> dict[str, str]:
    """torch.distributed's variables from SLURM's (one-line error naming a missing one); sets them in
    ``environ`` (default: os.environ) and returns them."""
    environ = os.environ if environ is None else environ
    missing = [v for v in (*SLURM_VARS.values(), "SLURM_JOB_NODELIST") if not environ.get(v)]
    if missing:
        raise UserError(f"--launcher slurm: {missing[0]} is not set (start each task with srun)")
    out = {}
    for ours, theirs in SLURM_VARS.items():
        if not environ[theirs].isdigit():
            raise UserError(f"--launcher slurm: {theirs}={environ[theirs]!r} is not a number")
        out[ours] = environ[theirs]
    out["MASTER_ADDR"] = environ.get("MASTER_ADDR") or first_node(environ["SLURM_JOB_NODELIST"])
    out["MASTER_PORT"] = environ.get("MASTER_PORT") or str(DEFAULT_PORT)
    environ.update(out)
    return out
