"""``--launcher slurm``: one process per ``srun`` task, torch.distributed's env taken from SLURM's.

RANK / WORLD_SIZE / LOCAL_RANK from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID (checked: at least one
task, the rank below the task count); MASTER_ADDR (unless set) the job's first node, read from
SLURM_JOB_NODELIST without expanding the list; MASTER_PORT as set, else DEFAULT_PORT.
"""
from __future__ import annotations

import os
import re

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


def _digits(text: str) -> bool:
    """A host-range bound: ASCII digits, at most 18 of them."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _expand(name: str) -> list[str]:
    """One host pattern, any number of bracket groups: 'gpu[1-2]-ib[01,03]' -> 4 names."""
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", name)
    if m is None:
        return [name]
    head, ranges, tail = m.groups()
    out = []
    for r in ranges.split(","):
        lo, _, hi = r.strip().partition("-")
        if not _digits(lo) or (hi and not _digits(hi)) or (hi and int(hi) < int(lo)):
            raise UserError(f"SLURM_JOB_NODELIST: cannot read the range {r!r} in {name!r}")
        width = len(lo)                                           # node[01-03]: zero padded
        out += [f"{head}{i:0{width}d}{t}" for i in range(int(lo), int(hi or lo) + 1) for t in _expand(tail)]
    return out


def parse_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list -> host names: 'node[01-03,07],gpu5' -> node01 .. node07, gpu5."""
    if nodelist.count("[") != nodelist.count("]"):
        raise UserError(f"SLURM_JOB_NODELIST: unbalanced brackets in {nodelist!r}")
    return [host for part in _split_top(nodelist.strip()) if part for host in _expand(part)]


def _first_of(name: str) -> str:
    """The first host of one host pattern, no range expanded: 'gpu[07-08]-ib[1,3]' -> 'gpu07-ib1' (each
    range checked as ``_expand`` checks it, so 'node[0-999999999999]' costs nothing)."""
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", name)
    if m is None:
        return name
    head, ranges, tail = m.groups()
    for r in ranges.split(","):
        lo, _, hi = r.strip().partition("-")
        if not _digits(lo) or (hi and not _digits(hi)) or (hi and int(hi) < int(lo)):
            raise UserError(f"SLURM_JOB_NODELIST: cannot read the range {r!r} in {name!r}")
    return head + ranges.split(",")[0].strip().partition("-")[0] + _first_of(tail)


def first_node(nodelist: str) -> str:
    """The job's first host (MASTER_ADDR), read from SLURM's compressed list without expanding it (a
    list of 10^12 hosts is one name away); no ``scontrol``, which would print every host."""
    if nodelist.count("[") != nodelist.count("]"):
        raise UserError(f"SLURM_JOB_NODELIST: unbalanced brackets in {nodelist!r}")
    parts = [p for p in _split_top(nodelist.strip()) if p]
    if not parts:
        raise UserError("SLURM_JOB_NODELIST: empty")
    return _first_of(parts[0])


def slurm_env(environ: dict | None = None) -> dict[str, str]:
    """torch.distributed's variables from SLURM's (one-line error naming a missing one); sets them in
    ``environ`` (default: os.environ) and returns them."""
    environ = os.environ if environ is None else environ
    missing = [v for v in (*SLURM_VARS.values(), "SLURM_JOB_NODELIST") if not environ.get(v)]
    if missing:
        raise UserError(f"--launcher slurm: {missing[0]} is not set (start each task with srun)")
    n = {}
    for ours, theirs in SLURM_VARS.items():
        raw = environ[theirs].strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
            raise UserError(f"--launcher slurm: {theirs}={environ[theirs]!r} is not a number "
                            "(0 to 999999999)")
        n[ours] = int(raw)
    if n["WORLD_SIZE"] < 1:
        raise UserError(f"--launcher slurm: SLURM_NTASKS={environ['SLURM_NTASKS']!r}: a job has at least "
                        "one task")
    if n["RANK"] >= n["WORLD_SIZE"]:
        raise UserError(f"--launcher slurm: SLURM_PROCID={n['RANK']} is not below "
                        f"SLURM_NTASKS={n['WORLD_SIZE']} (ranks are 0..{n['WORLD_SIZE'] - 1})")
    out = {k: str(v) for k, v in n.items()}
    out["MASTER_ADDR"] = environ.get("MASTER_ADDR") or first_node(environ["SLURM_JOB_NODELIST"])
    out["MASTER_PORT"] = environ.get("MASTER_PORT") or str(DEFAULT_PORT)
    environ.update(out)
    return out
