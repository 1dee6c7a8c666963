"""Regenerate the port check's shipped reference (src/maskfeat/references/): run the default
`maskfeat check-port` on CPU in fp32 and record its steps and losses, the versions of torch,
torchvision and timm, the settings that decide the curve, the command and the date.

    PYTHONPATH=src python scripts/make_port_reference.py [--steps 100] [--out src/maskfeat/references]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import timm
import torch
import torchvision

from maskfeat.logs import read_loss_curve
from maskfeat.tasks.check_port import (
    DEFAULT_STEPS,
    LOG_INTERVAL,
    REFERENCE_INFO,
    REFERENCE_LOG,
    PortCheck,
    reference_settings,
    resolve_port_check,
    run_port_check,
)

COMMAND = "maskfeat check-port --device cpu train.amp=none"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--out", type=Path, default=REFERENCE_LOG.parent, help="folder of the reference files")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="port_reference_") as tmp:
        overrides = ["train.amp=none", f"train.output_dir={tmp}", "train.progress=false"]
        task, cfg = resolve_port_check(None, overrides, steps=args.steps, device="cpu")
        start = time.perf_counter()
        run_port_check(PortCheck(task, cfg, REFERENCE_LOG, shipped=False))
        wall = time.perf_counter() - start
        curve = read_loss_curve(Path(tmp) / "log.jsonl")
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": int(s), "loss": float(v)}) for s, v in zip(curve.steps, curve.losses)]
    (args.out / REFERENCE_LOG.name).write_text("\n".join(lines) + "\n")
    command = COMMAND + (f" --steps {args.steps}" if args.steps != DEFAULT_STEPS else "")
    info = {
        "command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": "cpu", "amp": "none (fp32)", "steps": args.steps, "log_interval": LOG_INTERVAL,
        "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(), "wall_s": round(wall, 1),
        "settings": reference_settings(cfg),
    }
    (args.out / REFERENCE_INFO.name).write_text(json.dumps(info, indent=1) + "\n")
    print(f"{len(lines)} points, loss {curve.losses[0]:.4f} -> {curve.losses[-1]:.4f}, {wall:.0f} s: "
          f"{args.out / REFERENCE_LOG.name}, {args.out / REFERENCE_INFO.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
