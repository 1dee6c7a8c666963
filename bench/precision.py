"""Loss curves of one recipe in fp32, bf16 and fp16 on this machine, each pair compared as a port check
compares them (mean relative / absolute error, signed ones): the precision table of docs/porting.md.

Every run has check-port's settings (seed 0, drop path 0, a loss point per step, a fresh run) and
differs only in ``train.amp``; the data (crops, flips, masks) are the same in each. On the CPU fp16 and
bf16 are autocast emulations: much slower than fp32 (fp16 most), same arithmetic rounding.

    python bench/precision.py --recipe demo --steps 60
    python bench/precision.py --recipe vit-b --steps 6 --batch 2       # ViT-B/16 224 px, the photos
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from maskfeat.comparison import CompareOptions, compare_logs
from maskfeat.tasks.check_port import port_settings

RECIPES = {
    "demo": ["--config", "configs/pretrain/maskfeat_vit-mini-p16_skimage.yaml"],
    "vit-b": ["--config", "configs/pretrain/maskfeat_vit-base-p16_in1k.yaml", "data.source=skimage",
              "data.samples_per_epoch=1024"],
}
REPO = Path(__file__).resolve().parents[1]


def run(recipe: str, amp: str, steps: int, batch: int | None, device: str, out: Path) -> float:
    """One run's seconds per step; its log.jsonl in ``out``."""
    cmd = [sys.executable, "-m", "maskfeat", "pretrain", *RECIPES[recipe], *port_settings(steps),
           f"train.amp={amp}", f"train.device={device}", f"train.output_dir={out}", "train.progress=false",
           "train.text_log=never", "data.num_workers=0", "train.report_to=[]"]
    if batch:
        cmd.append(f"train.batch_size={batch}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=tuple(RECIPES), default="demo")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=None, help="train.batch_size (default: the recipe's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amps", default="none,bf16,fp16", help="each run is compared with each one before it")
    args = p.parse_args()
    amps = args.amps.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        secs = {a: run(args.recipe, a, args.steps, args.batch, args.device, Path(tmp) / a) for a in amps}
        print(f"{args.recipe}, {args.steps} steps, batch {args.batch or 'as the recipe'}, {args.device}, "
              f"torch {__import__('torch').__version__}; s/step: "
              + ", ".join(f"{a} {secs[a]:.2f}" for a in amps))
        print("| run vs reference | mean rel. err. | mean abs. err. | signed rel. | signed abs. | 2-sided |")
        print("|---|---|---|---|---|---|")
        for i, amp in enumerate(amps):
            for ref in amps[:i]:
                fig = compare_logs(Path(tmp) / amp / "log.jsonl", Path(tmp) / ref / "log.jsonl",
                                   CompareOptions(min_points=min(args.steps, 10))).figures()
                cells = [f"{fig[k]:.3g}" for k in ("mean_relative_error", "mean_absolute_error",
                                                    "signed_relative_error", "signed_absolute_error")]
                print(f"| {amp} vs {ref} | {' | '.join(cells)} | {fig['two_sided_verdict']} |", flush=True)

if __name__ == "__main__":
    main()
