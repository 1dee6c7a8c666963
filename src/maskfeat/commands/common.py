"""Arguments and set-up shared by the training commands."""
from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser, default_hint: str) -> None:
    parser.add_argument("--config", "-c", default=None, metavar="YAML",
                        help=f"recipe file (default: {default_hint}); also a shipped name such as "
                             "pretrain/maskfeat_vit-base-p16_in1k")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. optim.lr=1e-3 data.root=/data/imagenet train.resume=auto")
