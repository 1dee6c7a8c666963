"""``maskfeat prepare``: write WebDataset shards (and their manifest) for ``data.source=shards``."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..data.prepare import INPUTS, PrepareSpec, prepare
from ..data.shard_manifest import verify_shards
from ..errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", choices=list(INPUTS),
                        help="folder: an image tree (class sub-folders or flat); "
                             "list: an mmpretrain list file; video: Kinetics CSV or 'path label' lines")
    parser.add_argument("--root", help="the input folder (list / video: paths are relative to it)")
    parser.add_argument("--ann-file", default="",
                        help="list / video: the list file or annotations, relative to --root")
    parser.add_argument("--split", default="",
                        help="the sub-folder of --root holding the images / videos (list / video: their "
                             "paths are relative to it), e.g. train; '' = --root (default)")
    parser.add_argument("--out", help="output folder (an interrupted prepare into it continues)")
    parser.add_argument("--shard-mb", type=float, default=512.0,
                        help="target shard size in MB of input files (default 512; 0 = no limit)")
    parser.add_argument("--shard-samples", type=int, default=0,
                        help="at most this many samples per shard (0 = no limit)")
    parser.add_argument("--procs", type=int, default=min(8, os.cpu_count() or 1),
                        help="processes writing shards")
    parser.add_argument("--clip-frames", type=int, default=0,
                        help="video: keep the centred span of this many frames, re-encoded with H.264 CRF 18 "
                             "(0 = store each file as it is)")
    parser.add_argument("--shuffle-seed", type=int, default=-1,
                        help="write the inputs in a random order drawn with this seed (recommended for "
                             "class-sorted training folders such as ImageNet's); "
                             "-1 = in input order (default)")
    parser.add_argument("--prefix", default="shard", help="shard file names: <prefix>-000000.tar, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verify", metavar="DIR", default=None,
                        help="check the shards in DIR against its manifest.json (size and sha256); "
                             "nothing is written")


def verify(folder: str) -> int:
    checked, bad = verify_shards(folder)
    if bad:
        raise UserError(f"--verify: {len(bad)} of {checked} shards do not match {folder}/manifest.json, "
                        f"e.g. {bad[0]}; prepare them again")
    print(f"maskfeat prepare: {checked} shards match {folder}/manifest.json (size and sha256)")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.verify is not None:
        return verify(args.verify)
    missing = [f"--{k}" for k in ("input", "root", "out") if getattr(args, k) is None]
    if missing:
        raise UserError(f"{', '.join(missing)}: required (or --verify DIR to check a prepare's shards)")
    spec = PrepareSpec(args.input, args.root, args.out, args.ann_file, args.shard_mb, args.shard_samples,
                       args.procs, args.clip_frames, args.shuffle_seed, args.prefix, not args.no_progress,
                       split=args.split)
    m = prepare(spec)
    print(f"maskfeat prepare: {m.total} samples in {len(m.shards)} shards, {len(m.skipped)} inputs skipped "
          f"-> {Path(args.out) / 'manifest.json'}")
    return 0
