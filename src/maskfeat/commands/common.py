"""Arguments shared by the commands that run a task (pretrain, finetune, linprobe, knn)."""
from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser, default_hint: str) -> None:
    parser.add_argument("--config", "-c", default=None, metavar="YAML",
                        help=f"recipe file (default: {default_hint}); also a shipped name such as "
                             "pretrain/maskfeat_vit-base-p16_in1k")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. optim.lr=1e-3 data.root=/data/imagenet "
                             "train.resume=auto")


def task_command(job: str, default_hint: str):
    """(add_arguments, run) of a command that resolves ``job``'s task and runs it."""
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, default_hint)

    def run(args: argparse.Namespace) -> int:
        from ..tasks import run_task

        run_task(job, args.config, args.overrides)
        return 0
    return add_arguments, run
