"""``maskfeat prepare``: WebDataset shards and their manifest from a folder, a list file or video annotations.

Inputs keep their order (that of ``data.source=folder`` / ``list``), so sample i of the shards is
file i of the folder minus the skipped inputs, and pre-training from the shards seeds every crop
and mask as the folder source does. ``shuffle_seed`` >= 0 writes them in a random order instead
(a class-sorted folder otherwise gives shards of one or two classes each). Several processes
write whole shards; see ``shard_writer`` for the plan, the atomic writes and how an interrupted
prepare resumes.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import signal
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import Interrupted, UserError, stop_on_signals
from ..run_lock import RunLock
from .folder_scan import scan_folder, skipped_of, split_folders
from .images import decode_rgb_bytes
from .list_file import read_list_file
from .shard_manifest import MANIFEST_NAME, Manifest, ShardInfo, write_manifest
from .shard_writer import (
    Input,
    done_record,
    file_size,
    plan_fingerprint,
    plan_shards,
    record_fields,
    remove_temp_files,
    start_or_resume,
    write_shard,
)


@dataclass
class PrepareSpec:
    input: str               # folder | list | video (see INPUTS)
    root: str
    out: str
    ann_file: str = ""       # list / video: the list file or annotations, relative to root or absolute
    shard_mb: float = 512.0  # target shard size in MB of input files (0 = no limit)
    shard_samples: int = 0   # at most this many samples per shard (0 = no limit)
    procs: int = 1
    clip_frames: int = 0     # video: keep the centred span of this many frames, re-encoded (0 = whole file)
    shuffle_seed: int = -1   # >= 0: write the inputs in a random order (class-sorted folders); -1: as given
    prefix: str = "shard"
    progress: bool = True
    split: str = ""          # the sub-folder of root holding the inputs (list / video: paths relative to it)


def _inputs_of(root: Path, paths, labels) -> list[Input]:
    out = []
    for p, label in zip(paths, labels):
        p = Path(p)
        rel = str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
        out.append(Input(str(p), int(label), rel, file_size(str(p))))
    return out


def _files_of(files) -> tuple[list[str], list[int]]:
    return [files.path(i) for i in range(len(files))], files.labels.tolist()


def folder_inputs(spec: PrepareSpec) -> tuple[list[Input], list[str], list[dict]]:
    found = [] if spec.split else split_folders(spec.root)
    if found:
        raise UserError(f"--split: {spec.root} holds the split folders {', '.join(found)}; give "
                        "--split train (or --root <that folder>)")
    files = scan_folder(Path(spec.root) / spec.split)
    skipped = [{**s, "input": os.path.relpath(s["input"], spec.root)} for s in skipped_of(files.notes)]
    return _inputs_of(Path(spec.root), *_files_of(files)), files.classes, skipped


def list_inputs(spec: PrepareSpec) -> tuple[list[Input], list[str], list[dict]]:
    if not spec.ann_file:
        raise UserError("--ann-file: required for --input list")
    return _inputs_of(Path(spec.root), *_files_of(read_list_file(spec.root, spec.ann_file,
                                                                   prefix=spec.split))), [], []


def video_inputs(spec: PrepareSpec) -> tuple[list[Input], list[str], list[dict]]:
    """Kinetics CSV or 'path label' lines; listed files that are missing are skipped and listed."""
    from .video_annotations import annotation_entries, labels_of

    if not spec.ann_file:
        raise UserError("--ann-file: required for --input video")
    entries = annotation_entries(spec.root, spec.ann_file, prefix=spec.split)
    present = [(p, label) for p, label, _ in entries if p is not None]
    missing = [{"input": listed, "reason": "listed but not found"} for p, _, listed in entries if p is None]
    labels, classes = labels_of([label for _, label in present])
    return _inputs_of(Path(spec.root), [p for p, _ in present], labels), classes, missing


# --input -> (kind, inputs in order with labels, class names, inputs skipped before writing)
INPUTS = {"folder": ("image", folder_inputs), "list": ("image", list_inputs),
          "video": ("video", video_inputs)}


def check_image(data: bytes, suffix: str) -> tuple[str, bytes]:
    """An image is stored as it is, once the training decoder has decoded it."""
    decode_rgb_bytes(data)
    return (suffix.lower().lstrip(".") or "img"), data


def encoder_for(kind: str, spec: PrepareSpec):
    if kind == "video":
        from .video_clip_cut import VideoEncoder
        return VideoEncoder(spec.clip_frames)
    if spec.clip_frames:
        raise UserError("--clip-frames: only for --input video")
    return check_image


def _pool_map(procs: int):
    """map(fn, items) yielding results as they finish: in this process (1) or a pool of ``procs``."""
    if procs <= 1:
        return None, map
    pool = mp.get_context("fork").Pool(procs, initializer=_quiet_worker)
    return pool, partial(pool.imap_unordered, chunksize=1)


def _quiet_worker() -> None:
    """A writer process: one thread; Ctrl-C (sent to the whole process group) is the parent's to
    handle, and the parent's SIGTERM (``Pool.terminate``) ends it without a word."""
    import torch
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)


PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_spec(spec: PrepareSpec) -> None:
    """Every option, before anything is read or written; a one-line UserError naming the option."""
    if spec.input not in INPUTS:
        raise UserError(f"--input: unknown input {spec.input!r}; choose {', '.join(INPUTS)}")
    if not (math.isfinite(spec.shard_mb) and spec.shard_mb >= 0):
        raise UserError(f"--shard-mb: {spec.shard_mb} is not a size (a finite number of MB >= 0; "
                        "0 = no limit)")
    if not 0 <= spec.shard_samples <= 999_999:
        raise UserError(f"--shard-samples: {spec.shard_samples} is not in 0..999999 (0 = no limit)")
    if spec.procs < 1 or spec.clip_frames < 0:
        raise UserError(f"--procs ({spec.procs}) must be >= 1 and --clip-frames ({spec.clip_frames}) >= 0")
    if not PREFIX.fullmatch(spec.prefix):
        raise UserError(f"--prefix: {spec.prefix!r} is not a plain file name (letters, digits, '.', '_', "
                        "'-', starting with a letter or digit; no folders)")
    root, out = Path(spec.root).resolve(), Path(spec.out).resolve()
    if spec.input == "folder" and out.is_relative_to(root):
        raise UserError(f"--out: {spec.out} lies inside --root {spec.root}: the folder scan would read the "
                        "shards as images (or as a class); choose an --out outside --root")


def fingerprint_settings(spec: PrepareSpec) -> dict:
    """The settings a prepare is told apart by: what is read, not how it was typed (the root and list
    file resolved; --out, --procs and --progress left out)."""
    settings = {k: v for k, v in asdict(spec).items() if k not in ("out", "procs", "progress")}
    settings["root"] = str(Path(spec.root).resolve())
    if spec.ann_file:
        settings["ann_file"] = str((Path(spec.root) / spec.ann_file).resolve())
    settings["split"] = os.path.normpath(spec.split) if spec.split else ""
    return settings


def prepare(spec: PrepareSpec) -> Manifest:
    """Write (or finish writing) the shards of ``spec`` and their manifest; returns the manifest.
    One prepare at a time per ``--out`` (the run lock training uses, naming the holder's PID)."""
    check_spec(spec)
    kind, gather = INPUTS[spec.input]
    encode = encoder_for(kind, spec)
    try:
        inputs, classes, skipped = gather(spec)
    except UserError as e:                      # the readers name config keys; here they are options
        raise UserError(str(e).replace("data.root:", "--root:")
                        .replace("data.ann_file:", "--ann-file:")) from None
    if spec.shuffle_seed >= 0:
        inputs = [inputs[i] for i in np.random.default_rng(spec.shuffle_seed).permutation(len(inputs))]
    out = Path(spec.out)
    tasks = plan_shards(inputs, spec.prefix, int(spec.shard_mb * 2**20), spec.shard_samples)
    settings = fingerprint_settings(spec)
    lock = RunLock(out, key="--out")
    try:
        lock.check()
        start_or_resume(out, plan_fingerprint(inputs, settings), settings, lock.claim)
        records = {t.name: done_record(out, t) for t in tasks}
        _write(spec, out, kind, encode, tasks, records)
        return _finish(out, kind, [records[t.name] for t in tasks], classes, skipped,
                       len(inputs) + len(skipped), settings)
    finally:
        lock.release()


def _write(spec: PrepareSpec, out: Path, kind: str, encode, tasks, records: dict) -> None:
    """Write the shards ``records`` lacks (filling it in). SIGINT / SIGTERM stop it: the complete shards
    are kept, the temp files of the ones being written removed, and ``Interrupted`` says so."""
    todo = [t for t in tasks if records[t.name] is None]
    total = sum(len(t.inputs) for t in tasks)
    bar = tqdm(total=total, initial=total - sum(len(t.inputs) for t in todo), unit=kind,
               disable=not spec.progress, dynamic_ncols=True, desc=f"prepare {out}")
    try:
        with stop_on_signals():
            pool, map_fn = _pool_map(min(spec.procs, max(len(todo), 1)))
            try:
                for record in map_fn(partial(write_shard, out_dir=out, encode=encode), todo):
                    records[record["name"]] = record
                    bar.update(record["samples"] + len(record["skipped"]))
            finally:
                if pool is not None:
                    pool.terminate()
    except Interrupted as e:
        remove_temp_files(out)
        done = sum(r is not None for r in records.values())
        raise Interrupted(e.signum, f"{e}: {done} of {len(tasks)} shards are complete and kept in {out} "
                          "(no partial shard under a final name); the same command again writes the rest"
                          ) from None
    finally:
        bar.close()


def _finish(out: Path, kind: str, records: list[dict], classes, skipped, n_inputs: int, settings) -> Manifest:
    labels: Counter = Counter()
    for r in records:
        labels.update({int(k): v for k, v in r["labels"].items()})
        skipped = skipped + r["skipped"]
    manifest = Manifest(kind, [ShardInfo(**record_fields(r)) for r in records], list(classes), dict(labels),
                        skipped, n_inputs, settings)
    write_manifest(manifest, out / MANIFEST_NAME)
    if manifest.total == 0:
        raise UserError(f"prepare: none of the {manifest.inputs} inputs could be read, e.g. "
                        f"{skipped[0]['input']} ({skipped[0]['reason']}); see {out / MANIFEST_NAME}")
    return manifest
