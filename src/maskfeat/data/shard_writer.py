"""Writing shards, resumably: the plan (which inputs go to which shard), one shard, the records.

The plan is fixed before anything is written (inputs in order, a new shard when the next input
would pass the target size in bytes, measured on the input files, or samples), so a rerun writes
the same shards. A shard is written under a hidden temp name, fsync'ed and renamed; then its
record (samples, bytes, sha256, labels, skipped inputs) is written to ``.prepare/<shard>.json``.
A shard counts as done when its record exists and the file under its final name has the recorded
size; any other shard is (re)written. Inputs that fail the check (``encode`` raises) are skipped
and recorded with the reason; positions (and keys) count written samples only.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..atomic import atomic_file, write_atomic
from ..errors import UserError
from ..run_lock import LOCK_NAME
from .shard_manifest import sample_key

STATE_DIR = ".prepare"
SKIP_ERRORS = (OSError, ValueError, RuntimeError, EOFError)


@dataclass
class Input:
    path: str        # file to read
    label: int       # -1 = unlabelled
    rel: str         # name relative to the input root (stored as '<key>.src', named in messages)
    size: int = 0    # bytes on disk, for the shard plan (0 when the file is missing)


@dataclass
class ShardTask:
    number: int
    name: str
    inputs: list[Input]


def plan_shards(inputs: list[Input], prefix: str, max_bytes: int, max_samples: int) -> list[ShardTask]:
    """Consecutive inputs per shard; a shard closes before an input that would take it past
    ``max_bytes`` (0 = no limit) or when it holds ``max_samples`` (0 = no limit)."""
    groups: list[list[Input]] = [[]]
    size = 0
    for item in inputs:
        full = groups[-1] and ((max_samples and len(groups[-1]) >= max_samples)
                               or (max_bytes and size + item.size > max_bytes))
        if full:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += item.size
    return [ShardTask(n, f"{prefix}-{n:06d}.tar", g) for n, g in enumerate(groups) if g]


class _HashingWriter:
    """A write-only file that also counts and hashes what goes through it."""

    def __init__(self, f):
        self.f, self.sha, self.bytes = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        return self.f.write(data)


def write_shard(task: ShardTask, out_dir: Path, encode: Callable[[bytes, str], tuple[str, bytes]]) -> dict:
    """Write one shard atomically and then its record; returns the record.

    ``encode(data, suffix) -> (extension, bytes to store)`` checks (and may convert) one input;
    it raises for a bad one, which is skipped."""
    import webdataset as wds

    record = {"name": task.name, "samples": 0, "labels": {}, "skipped": []}
    with atomic_file(out_dir / task.name) as f:
        sink = _HashingWriter(f)
        with wds.TarWriter(sink, encoder=False, mtime=0) as tar:
            for item in task.inputs:
                try:
                    ext, data = encode(Path(item.path).read_bytes(), Path(item.path).suffix)
                except SKIP_ERRORS as e:
                    reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                    record["skipped"].append({"input": item.rel, "reason": reason})
                    continue
                sample = {"__key__": sample_key(task.number, record["samples"]), ext: data,
                          "src": os.fsencode(item.rel)}    # the name's bytes, also when they are not UTF-8
                if item.label >= 0:
                    sample["cls"] = str(item.label).encode()
                    record["labels"][str(item.label)] = record["labels"].get(str(item.label), 0) + 1
                tar.write(sample)
                record["samples"] += 1
        record.update(bytes=sink.bytes, sha256=sink.sha.hexdigest())
    write_atomic(out_dir / STATE_DIR / f"{task.name}.json", json.dumps(record).encode())
    return record


def plan_fingerprint(inputs: list[Input], settings: dict) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for item in inputs:
        h.update(json.dumps([item.rel, item.label, item.size]).encode())
    return h.hexdigest()


def start_or_resume(out_dir: Path, fingerprint: str, settings: dict, claim: Callable[[], None]) -> None:
    """Create ``out_dir`` for a new prepare, or check that it holds this very prepare (same inputs and
    settings) and remove the temp files a killed run left. Anything else in it is refused. ``claim``
    (take the folder's lock) is called once the checks pass, before anything is written."""
    state = out_dir / STATE_DIR
    plan = state / "plan.json"
    if plan.is_file():
        if json.loads(plan.read_text()).get("fingerprint") != fingerprint:
            raise UserError(f"--out: {out_dir} holds a prepare of other inputs or settings; "
                            f"choose another folder or delete it")
        claim()
        remove_temp_files(out_dir)
        return
    if out_dir.is_dir() and any(p.name != LOCK_NAME for p in out_dir.iterdir()):
        raise UserError(f"--out: {out_dir} is not empty and holds no maskfeat prepare; "
                        "choose an empty folder")
    try:
        claim()
        state.mkdir(parents=True, exist_ok=True)
        write_atomic(plan, json.dumps({"fingerprint": fingerprint, "settings": settings}).encode())
    except OSError as e:
        raise UserError(f"--out: cannot write to {out_dir} ({e.strerror})") from None


def remove_temp_files(out_dir: Path) -> None:
    """Remove the hidden temp files of shards and records that were being written (only while this
    process holds the folder's lock: no other prepare writes there)."""
    for folder in (out_dir, out_dir / STATE_DIR):
        for p in folder.glob(".*.tmp*"):
            p.unlink(missing_ok=True)


def done_record(out_dir: Path, task: ShardTask) -> dict | None:
    """The record of a shard a previous run completed (file present with the recorded size), else None."""
    rec_path, shard = out_dir / STATE_DIR / f"{task.name}.json", out_dir / task.name
    if not (rec_path.is_file() and shard.is_file()):
        return None
    try:
        record = json.loads(rec_path.read_text())
    except ValueError:
        return None
    return record if record.get("bytes") == shard.stat().st_size else None


def record_fields(record: dict) -> dict:
    """The manifest's entry of a shard record."""
    return {k: record[k] for k in ("name", "samples", "bytes", "sha256")}


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
