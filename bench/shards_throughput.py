"""Folder vs shards: images per second through the real pre-training loader (JPEG decode, random
resized crop, flip, block mask, collate) and the memory (PSS) of the main process with its loader
workers, the sources taking turns epoch by epoch so that a noisy machine treats them alike.

    PYTHONPATH=src python bench/shards_throughput.py --images 512 --workers 2 --rounds 4

The data: ImageNet-like JPEGs (short side 300-500 px, bench/throughput.py's make_jpeg_folder),
written once as a folder and once as shards by ``maskfeat prepare``. ``shard_rows`` returns the
rows (a list of dicts) for another bench to print.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from maskfeat.config import resolve_config  # noqa: E402
from maskfeat.data import build_loader, build_pretrain_dataset  # noqa: E402
from maskfeat.data.prepare import PrepareSpec, prepare  # noqa: E402
from maskfeat.defaults import PRETRAIN  # noqa: E402


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *descendants(k)]
    return out


def family_pss_mib(pid: int) -> float:
    """PSS of a process and all its descendants (loader workers, pipe: commands), MiB."""
    return sum(pss_kib(p) for p in [pid, *descendants(pid)]) / 1024


def loader_for(extra: list[str], args):
    cfg = resolve_config(PRETRAIN, None, [f"model.img_size={args.img_size}", f"data.num_workers={args.workers}",
                                          "data.pin_memory=false", *extra])
    return build_loader(build_pretrain_dataset(cfg), args.batch, cfg["data"], 0, 1, cfg["train"]["seed"])


def one_epoch(loader, epoch: int) -> tuple[int, float, float]:
    """(images, seconds, peak PSS MiB) of one pass over the loader."""
    import os

    loader.set_epoch(epoch)
    images, peak = 0, 0.0
    start = time.perf_counter()
    for batch in loader:
        images += len(batch["images"])
        peak = max(peak, family_pss_mib(os.getpid()))
    return images, time.perf_counter() - start, peak


def shard_rows(folder: Path, shards: Path, args) -> list[dict]:
    """Rows {'source', 'workers', 'batch', 'img_per_s', 'pss_mib', 'rounds'}: folder, shards, shards through
    ``pipe:cat``; one warm-up epoch each (workers start, page cache), then ``args.rounds`` timed epochs
    each, taking turns."""
    n = len(list(shards.glob("shard-*.tar")))
    variants = {
        "folder": ["data.source=folder", f"data.root={folder}"],
        "shards": ["data.source=shards", f"data.root={shards}"],
        "shards, pipe:cat": ["data.source=shards", f"data.root={shards}", "data.allow_pipe=true",
                             f"data.shards=pipe:cat {shards}/shard-{{000000..{n - 1:06d}}}.tar"],
    }
    loaders = {name: loader_for(extra, args) for name, extra in variants.items()}
    stats = {name: [0, 0.0, 0.0] for name in variants}
    for name, loader in loaders.items():
        one_epoch(loader, 0)
    for rnd in range(args.rounds):
        order = list(loaders) if rnd % 2 == 0 else list(loaders)[::-1]
        for name in order:
            images, seconds, peak = one_epoch(loaders[name], rnd + 1)
            s = stats[name]
            s[0], s[1], s[2] = s[0] + images, s[1] + seconds, max(s[2], peak)
    return [{"source": name, "workers": args.workers, "batch": args.batch, "img_per_s": round(s[0] / s[1], 1),
             "pss_mib": round(s[2]), "rounds": args.rounds} for name, s in stats.items()]


def format_table(rows: list[dict]) -> str:
    head = ["source", "workers", "batch", "img/s", "PSS MiB (main + workers)"]
    lines = [head] + [[r["source"], str(r["workers"]), str(r["batch"]), f"{r['img_per_s']:.1f}", str(r["pss_mib"])]
                      for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = lambda line: "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(x) for x in lines[1:]])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=4, help="timed epochs per source")
    p.add_argument("--shard-mb", type=float, default=8.0, help="shard size for maskfeat prepare")
    args = p.parse_args(argv)
    from throughput import make_jpeg_folder

    with tempfile.TemporaryDirectory(prefix="maskfeat_shards_bench_") as tmp:
        folder, shards = Path(tmp) / "jpegs", Path(tmp) / "shards"
        make_jpeg_folder(folder, args.images)
        t = time.perf_counter()
        m = prepare(PrepareSpec("folder", str(folder), str(shards), shard_mb=args.shard_mb, procs=args.workers,
                                progress=False))
        took = time.perf_counter() - t
        print(f"maskfeat prepare: {m.total} images -> {len(m.shards)} shards in {took:.1f} s "
              f"({m.total / took:.0f} img/s, {args.workers} processes)", file=sys.stderr)
        rows = shard_rows(folder, shards, args)
    print(f"\n{args.images} JPEGs (short side 300-500 px) -> {args.img_size} px crops + masks, "
          f"batch {args.batch}, {args.workers} workers, {args.rounds} epochs each, taking turns")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
