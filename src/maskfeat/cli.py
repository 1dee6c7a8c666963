"""The ``maskfeat`` console command: one sub-command per job, each in maskfeat.commands."""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import exit_code

# name -> (module implementing add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("maskfeat.commands.pretrain", "MaskFeat pre-training (default: tiny ViT on bundled photos)"),
    "finetune": ("maskfeat.commands.finetune",
                 "fine-tune a pre-trained ViT classifier (layer decay, RandAugment, Mixup, EMA)"),
    "linprobe": ("maskfeat.commands.linprobe",
                 "linear probe (BatchNorm + Linear) on frozen features, LARS or SGD"),
    "knn": ("maskfeat.commands.knn", "weighted k-NN top-1 / top-5 of frozen features (cosine, k=20, T=0.07)"),
    "compare-loss": ("maskfeat.commands.compare_loss",
                     "compare a loss curve with a reference (MRE / MAE by step, PASS/FAIL, PNG)"),
    "check-port": ("maskfeat.commands.check_port", "first N steps on a device vs a reference loss curve"),
    "visualize": ("maskfeat.commands.visualize",
                  "PNG per image: input, mask, HOG target and predicted HOG as glyphs"),
    "convert": ("maskfeat.commands.convert",
                "convert checkpoints: mmpretrain / SlowFast -> maskfeat, any -> timm safetensors"),
    "prepare": ("maskfeat.commands.prepare",
                "write WebDataset shards + manifest (folder, list file, Kinetics CSV) "
                "for data.source=shards"),
    "run": ("maskfeat.commands.run",
            "model-zoo front end: --config --launcher pytorch --nproc-per-node --cfg-options"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Imports a command's module (and so torch, timm, ...) only for the command being run."""
    parser = argparse.ArgumentParser(prog="maskfeat", description="MaskFeat: masked HOG feature prediction.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if only is None or name == only:
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in COMMANDS else ""
    args = build_parser(chosen).parse_args(argv)
    return exit_code(f"maskfeat {args.command}", lambda: importlib.import_module(args._module).run(args))


if __name__ == "__main__":
    sys.exit(main())
