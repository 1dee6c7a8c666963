"""``maskfeat convert INPUT OUTPUT [--from auto|mmpretrain|slowfast|maskfeat] [--to maskfeat|timm|timm-dir]``.

* mmpretrain MaskFeat pre-training or ViT classifier checkpoints, official SlowFast MaskFeat
  image (ViT) checkpoints -> ours (``.pth`` with 'model' and 'config');
* any of these, or ours -> a timm ``.safetensors`` (load with the printed ``timm.create_model`` call);
* ``--to timm-dir``: a folder (config.json, model.safetensors, README.md model card) that
  ``timm.create_model("local-dir:OUTPUT", pretrained=True)`` loads and a model hub takes as is.

Checkpoints are read with ``torch.load(weights_only=True)``: files carrying code are refused.
SIGINT / SIGTERM stop it at once (exit 130 / 143): OUTPUT is written under a temp name and renamed
when complete, so it is left as it was.
"""
from __future__ import annotations

import argparse

from ..convert.pipeline import SOURCES, TARGETS, convert
from ..errors import Interrupted, stop_on_signals


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="checkpoint to convert")
    p.add_argument("output", metavar="OUTPUT",
                   help="file to write (.pth for maskfeat, .safetensors for timm; a folder for timm-dir)")
    p.add_argument("--from", dest="source", choices=SOURCES, default="auto",
                   help="origin of INPUT (default: told from its keys)")
    p.add_argument("--to", dest="target", choices=TARGETS, default=None,
                   help="format of OUTPUT (default: timm for .safetensors, else maskfeat)")
    p.add_argument("--overwrite", action="store_true",
                   help="timm-dir: replace an existing non-empty OUTPUT folder")
    p.add_argument("--license", dest="license_name", default="other",
                   help="timm-dir: licence field of the model card and config (default: other)")
    p.add_argument("--num-heads", type=int, default=None,
                   help="attention heads (weights do not record it; "
                        "default: the maskfeat arch of that width)")
    p.add_argument("--no-verify", action="store_true", help="skip loading the timm export back into timm")


def run(args: argparse.Namespace) -> int:
    try:
        with stop_on_signals():
            lines = convert(args.input, args.output, args.source, args.target, args.num_heads,
                            verify=not args.no_verify, overwrite=args.overwrite,
                            license_name=args.license_name)
    except Interrupted as e:
        raise Interrupted(e.signum, f"{e}: nothing written ({args.output} left as it was, "
                          "no temp file kept); run the same command again") from None
    for line in lines:
        print(line)
    return 0
