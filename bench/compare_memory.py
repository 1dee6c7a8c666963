"""compare-loss on a long log: peak RSS and wall time of the whole command (``/usr/bin/time -v``).

Writes a log.jsonl of N records (default 1,000,000, ~200 MB, our keys) and a 1,000-point CSV
reference, then runs ``python -m maskfeat compare-loss LOG REF --no-plot`` with this tree's
``src`` and, with ``--other-src DIR``, another tree's (e.g. main's) under an address-space limit
(``--limit-gb``, so that a reader that holds the whole file fails instead of swapping). Prints a table:

    python bench/compare_memory.py [--records N] [--other-src ../main/src] [--limit-gb 6]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def write_log(path: Path, records: int) -> None:
    rec = {"lr": 1.0e-4, "data_time": 0.0123, "grad_norm": 1.2345, "time": 0.2345, "epoch": 1, "iter": 1,
           "memory": 12345, "img_per_s": 1234.5678, "nonfinite_steps": 0}
    with open(path, "w") as f:
        for step in range(1, records + 1):
            f.write(json.dumps({**rec, "loss": 0.5 + 1.0 / step, "step": step}) + "\n")


WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)")


def measure(src: Path, args: str, limit_gb: float) -> dict:
    """Wall seconds, peak RSS (MiB), exit code, last line of ``maskfeat compare-loss ARGS`` under ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    limit = f"ulimit -v {int(limit_gb * 2**20)}; " if limit_gb else ""
    cmd = f"{limit}exec /usr/bin/time -v {sys.executable} -m maskfeat compare-loss {args}"
    proc = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = WALL.search(proc.stderr)
    seconds = (int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))) if wall \
        else None
    lines = (proc.stdout.strip() or proc.stderr.strip() or "?").splitlines()
    return {"rss_mib": int(rss.group(1)) / 1024 if rss else None, "wall_s": seconds,
            "exit": proc.returncode, "last_line": (lines[-1] if proc.stdout.strip() else lines[0])[:60]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--other-src", type=Path, default=None, help="another tree's src/ to measure too")
    p.add_argument("--limit-gb", type=float, default=6.0, help="address-space limit per run (0: none)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log, ref = Path(tmp) / "log.jsonl", Path(tmp) / "ref.csv"
        write_log(log, args.records)
        ref.write_text("".join(f"{s},{0.5 + 1.0 / s}\n" for s in range(1, 1001)))
        size = log.stat().st_size / 2**20
        print(f"log.jsonl: {args.records:,} records, {size:.0f} MiB; reference 1,000 points")
        print("| tree | command | peak RSS (MiB) | wall (s) | exit | last line |\n|---|---|---|---|---|---|")
        for src in (SRC, args.other_src):
            runs = (("--help (the imports' floor)", "--help"), ("the long log", f"{log} {ref} --no-plot"))
            for what, cli in runs:
                if src is None:
                    continue
                r = measure(src.resolve(), cli, args.limit_gb)
                rss = f"{r['rss_mib']:.0f}" if r["rss_mib"] is not None else "?"
                wall = f"{r['wall_s']:.1f}" if r["wall_s"] is not None else "?"
                print(f"| {src} | {what} | {rss} | {wall} | {r['exit']} | {r['last_line']} |", flush=True)


if __name__ == "__main__":
    main()
