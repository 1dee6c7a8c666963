"""Memory of the file index under forked loader workers, and the list-file parse time (issue 13).

    python bench/index_memory.py                     # 1,281,167 lines, 4 workers, 50,000 samples each
    python bench/index_memory.py --lines 20000 --per-worker 500     # a quick look

Makes an mmpretrain list file of ``--lines`` lines (ImageNet-1k's train size by default) that all
name one real JPEG (``n00000123/../ILSVRC2012_val_00000001.JPEG 123``: the file exists, the paths
are as long as ImageNet's), then builds the real pre-training dataset (``data.source=list``) and its
DataLoader with ``--workers`` forked workers, and reads batches. It prints:

  * parse: seconds to build the dataset (reading and indexing the list file, the check of the
    first 1000 files);
  * index: the bytes of the dataset's ``FileIndex`` (where it has one), and what the build added
    to the main process's PSS;
  * PSS of the main process, of the workers together, and the total (the sum of ``Pss`` in
    /proc/<pid>/smaps_rollup over the main process and its children) at the first batch and once
    every worker has read ``--per-worker`` samples, and the growth between the two. Both are taken
    with the prefetch queue full (the loop pauses ``--settle`` seconds), so the batches in flight
    weigh the same in both. The same for ``Pss_Anon``, the anonymous part (heap: where an index's
    copied pages land): ``Pss_File`` (shared libraries) also moves with whatever other processes of
    the machine map the same files.

A control run, ``--lines 1000`` with the same ``--per-worker`` (the stream goes round the small list
many times), shows the growth that the workers' own machinery causes with an index of no size.

Run it on any revision: it uses only ``build_pretrain_dataset`` and ``build_pretrain_loader``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import child_pids, pss_mib  # noqa: E402

from maskfeat.config import resolve_config
from maskfeat.data import build_pretrain_dataset, build_pretrain_loader
from maskfeat.defaults import PRETRAIN

IMAGE = "ILSVRC2012_val_00000001.JPEG"


def make_list(folder: Path, lines: int, classes: int = 1000) -> Path:
    """One real JPEG (scikit-image's astronaut, 96 px) and a list file naming it ``lines`` times."""
    from maskfeat.data.images import skimage_photos

    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(skimage_photos()[0]) as im:
        im.convert("RGB").resize((96, 96)).save(folder / IMAGE, quality=90)
    for c in range(classes):
        (folder / f"n{c:08d}").mkdir(exist_ok=True)
    ann = folder / "meta" / "train.txt"
    ann.parent.mkdir(exist_ok=True)
    with open(ann, "w") as f:
        for start in range(0, lines, 100_000):
            f.write("".join(f"n{i % classes:08d}/../{IMAGE} {i % classes}\n"
                            for i in range(start, min(lines, start + 100_000))))
    return ann


def pss_row(stage: str) -> dict:
    """MiB of PSS of this process and of its children (the loader workers), and their anonymous part."""
    me = os.getpid()
    kids = child_pids(me)
    row = {"stage": stage, "workers_n": len(kids)}
    for key, field in (("", "Pss"), ("anon_", "Pss_Anon")):
        main, workers = pss_mib(me, field), sum(pss_mib(c, field) for c in kids)
        row.update({key + "main": main, key + "workers": workers, key + "total": main + workers})
    return row


def batches(loader, need: int):
    """``need`` batches, over as many epochs as it takes."""
    n, epoch = 0, 0
    while True:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            n += 1
            yield n, batch
            if n >= need:
                return
        epoch += 1


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lines", type=int, default=1_281_167, help="lines of the list file (ImageNet-1k train)")
    p.add_argument("--per-worker", type=int, default=50_000, help="samples each worker reads")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to let the prefetch queue fill before a reading")
    p.add_argument("--dir", default="", help="where the list file goes (default: a temporary folder)")
    return p.parse_args(argv)


def run(args: argparse.Namespace, folder: Path) -> list[dict]:
    ann = make_list(folder, args.lines)
    cfg = resolve_config(PRETRAIN, None, [
        "data.source=list", f"data.root={folder}", f"data.ann_file={ann}", f"data.num_workers={args.workers}",
        "data.pin_memory=false", f"model.img_size={args.img_size}", "mask.min_num_patches=2",
        f"train.batch_size={args.batch}"])
    before = pss_mib(os.getpid())
    t0 = time.perf_counter()
    dataset = build_pretrain_dataset(cfg)
    parse_s = time.perf_counter() - t0
    files = getattr(dataset, "files", None)
    index_mib = files.nbytes / 2**20 if files is not None else float("nan")
    build_mib = pss_mib(os.getpid()) - before
    print(f"list file: {len(dataset):,} lines; parse {parse_s:.2f} s; index {index_mib:.1f} MiB "
          f"({type(files).__name__ if files is not None else 'list of paths'}); "
          f"build added {build_mib:.1f} MiB to the main process's PSS", flush=True)
    loader = build_pretrain_loader(dataset, cfg, 0, 1, torch.device("cpu"))
    need = -(-args.workers * args.per_worker // args.batch)            # batches: every worker read per_worker
    rows = []
    for n, _ in batches(loader, need):
        if n == 1 or n == need:
            time.sleep(args.settle)
            rows.append(pss_row("first batch" if n == 1 else f"{args.per_worker:,} samples / worker"))
            print(f"  {rows[-1]['stage']}: total PSS {rows[-1]['total']:.1f} MiB", flush=True)
    report(rows, parse_s, index_mib, args)
    return rows


def report(rows: list[dict], parse_s: float, index_mib: float, args) -> None:
    print(f"\n{'stage':<26}{'main':>9}{'workers':>9}{'total':>9}"
          f"{'anon: main':>12}{'workers':>9}{'total':>9}  (MiB of PSS)")
    for r in rows:
        print(f"{r['stage']:<26}{r['main']:>9.1f}{r['workers']:>9.1f}{r['total']:>9.1f}"
              f"{r['anon_main']:>12.1f}{r['anon_workers']:>9.1f}{r['anon_total']:>9.1f}")
    for key, what in (("total", "total PSS"), ("anon_total", "anonymous PSS")):
        growth = rows[-1][key] - rows[0][key]
        share = f" = {100 * growth / index_mib:.1f}% of the index" if index_mib == index_mib else ""
        print(f"growth of the {what}: {growth:+.1f} MiB{share}")
    print(f"parse {parse_s:.2f} s; index {index_mib:.1f} MiB; {args.lines:,} lines; {args.workers} workers x "
          f"{args.per_worker:,} samples, batch {args.batch}")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.dir:
        run(args, Path(args.dir))
    else:
        with tempfile.TemporaryDirectory(prefix="index_memory_") as tmp:
            run(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
