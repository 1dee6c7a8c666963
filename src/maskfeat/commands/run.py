"""``run_maskfeat.py`` / ``maskfeat run``: the model-zoo style front end of our training jobs.

    python run_maskfeat.py --config CONFIG [--launcher none|pytorch|slurm] [--nproc-per-node N]
        [--amp] [--device TYPE] [--resume [PATH]] [--work-dir DIR] [--cfg-options key=value ...]

CONFIG is one of our YAML recipes (pre-training) or the name of an mmpretrain MaskFeat config
(ZOO_CONFIGS: with or without folders and ``.py``), which stands for our recipe of the same job.
``--launcher pytorch`` starts ``--nproc-per-node`` processes with torch's own launcher
(``torch.distributed.run --standalone``, run in this process) unless this process already runs
under it; the checks that can fail (config, data listing, batch against samples) run here first,
and a process ending on bad input ends the job with exit 2 and its one line (no elastic traceback).
``--launcher slurm``: each ``srun`` task is one process; its rank, world size, local rank and
master come from SLURM's variables (``engine/slurm.py``) and it runs the job in-process.
``--cfg-options`` takes our keys and mmpretrain's most used ones (MMPRETRAIN_ALIASES).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from ..config import ConfigError, builtin_config
from ..engine.device import device_count, device_type
from ..engine.slurm import slurm_env
from ..errors import UserError, exit_code, one_line
from ..tasks import preflight, resolve_task, run_task

# mmpretrain / mmengine config keys -> ours (pre-training)
MMPRETRAIN_ALIASES = {
    "train_dataloader.dataset.data_root": "data.root",
    "train_dataloader.dataset.ann_file": "data.ann_file",
    "train_dataloader.dataset.data_prefix.img_path": "data.train_split",
    "train_dataloader.dataset.data_prefix": "data.train_split",       # the bare form data_prefix='train'
    "train_dataloader.batch_size": "train.batch_size",
    "train_dataloader.num_workers": "data.num_workers",
    "train_dataloader.pin_memory": "data.pin_memory",
    "train_dataloader.persistent_workers": "data.persistent_workers",
    "optim_wrapper.optimizer.lr": "optim.lr",
    "optim_wrapper.optimizer.weight_decay": "optim.weight_decay",
    "optim_wrapper.optimizer.betas": "optim.betas",
    "optim_wrapper.optimizer.eps": "optim.eps",
    "optim_wrapper.clip_grad.max_norm": "optim.clip_grad",
    "auto_scale_lr.base_batch_size": "optim.base_batch_size",
    "train_cfg.max_epochs": "train.epochs",
    "randomness.seed": "train.seed",
    "default_hooks.logger.interval": "train.log_interval",
    "default_hooks.checkpoint.interval": "train.ckpt_interval",
    "model.backbone.drop_path_rate": "model.drop_path_rate",
    "model.target_generator.nbins": "hog.nbins",
    "model.target_generator.pool": "hog.cell_size",
    "model.target_generator.gaussian_window": "hog.gaussian_window",
    "work_dir": "train.output_dir",
}
# fine-tuning / linear probing: the labelled splits' keys (no HOG target)
LABELLED_ALIASES = {
    **{k: v for k, v in MMPRETRAIN_ALIASES.items() if not k.startswith("model.target_generator.")},
    "train_dataloader.dataset.ann_file": "data.train_ann_file",
    "val_dataloader.dataset.ann_file": "data.val_ann_file",
    "val_dataloader.dataset.data_prefix.img_path": "data.val_split",
    "val_dataloader.dataset.data_prefix": "data.val_split",
}
ALIASES = {"pretrain": MMPRETRAIN_ALIASES, "finetune": LABELLED_ALIASES, "linprobe": LABELLED_ALIASES}

# mmpretrain's MaskFeat configs (configs/maskfeat/, configs/maskfeat/benchmarks/; it has no linear-probe
# one) -> (job, our recipe under configs/)
ZOO_CONFIGS = {
    "maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k":
        ("pretrain", "pretrain/maskfeat_vit-base-p16_in1k.yaml"),
    "vit-base-p16_8xb256-coslr-100e_in1k": ("finetune", "finetune/vit-base-p16_in1k.yaml"),
}
MM_LR = "optim_wrapper.optimizer.lr"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="CONFIG",
                   help="recipe YAML, e.g. configs/pretrain/maskfeat_vit-base-p16_in1k.yaml, or an "
                        "mmpretrain MaskFeat config name, e.g. "
                        "maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k.py")
    p.add_argument("--launcher", choices=("none", "pytorch", "slurm"), default="none",
                   help="none: one process; pytorch: torch.distributed (torchrun); slurm: one process per "
                        "srun task (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_JOB_NODELIST)")
    p.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="processes to start with --launcher pytorch (default: GPUs, or 1 on CPU)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision as mmpretrain's --amp: fp16 autocast with a dynamic GradScaler "
                        "(train.amp=fp16), unless the config names bf16 or fp16")
    p.add_argument("--device", default=None, metavar="TYPE", help="train.device (shorthand)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                   help="resume from PATH, or from the latest checkpoint of the work dir when no PATH")
    p.add_argument("--work-dir", default=None, metavar="DIR", help="train.output_dir")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides: our keys (train.max_steps=100) or mmpretrain's "
                        "(train_dataloader.batch_size=64, optim_wrapper.optimizer.lr=1.6e-3, ...)")
    # the job of a YAML recipe (set from an mmpretrain config name; passed on to torchrun's processes)
    p.add_argument("--job", choices=tuple(ALIASES), default="pretrain", help=argparse.SUPPRESS)


def _under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def _stem(config: str) -> str:
    """'../configs/maskfeat/x.py' -> 'x'."""
    return config.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py")


def zoo_recipe(config: str) -> tuple[str, str] | None:
    """(job, recipe under configs/) of an mmpretrain MaskFeat config name we cover, matched by its
    stem (with or without folders and '.py', whether or not the file exists); None for any other
    name, except a '.py' one: that is an error listing the names we cover."""
    if _stem(config) in ZOO_CONFIGS:
        return ZOO_CONFIGS[_stem(config)]
    if config.endswith(".py"):
        covered = ", ".join(f"{k}.py ({job})" for k, (job, _) in ZOO_CONFIGS.items())
        raise ConfigError(f"--config {config}: not an mmpretrain config we cover; we cover {covered}, "
                          "or give one of our YAML recipes (configs/)")
    return None


def pick_recipe(args: argparse.Namespace) -> None:
    """An mmpretrain config name in ``--config`` becomes our recipe and its job (said on one line)."""
    found = zoo_recipe(args.config)
    if found is None:
        return
    job, recipe = found
    if os.environ.get("RANK", "0") == "0":
        print(f"run_maskfeat: mmpretrain config {_stem(args.config)}.py -> {job} recipe configs/{recipe}",
              file=sys.stderr, flush=True)
    args.job, args.config = job, str(builtin_config(recipe))


def translate(args: argparse.Namespace, world: int) -> list[str]:
    """Our ``key=value`` overrides from the command line (the job's aliases mapped, flags folded in).

    mmpretrain's ``optimizer.lr`` is the lr of the run as it stands (no --auto-scale-lr), while
    ours is per ``optim.base_batch_size`` images: when it is given and the base batch is not,
    the base batch is set to this run's global batch so the lr is used unchanged.
    """
    aliases = ALIASES[args.job]
    out, given = [], set()
    for item in args.cfg_options:
        if "=" not in item:
            raise ConfigError(f"--cfg-options: '{item}' is not of the form key=value")
        key, value = item.split("=", 1)
        key = aliases.get(key.strip(), key.strip())
        given.add(key)
        out.append(f"{key}={value}")
    if args.work_dir:
        out.append(f"train.output_dir={args.work_dir}")
    if args.resume:
        out.append(f"train.resume={args.resume}")
    if args.device:
        out.append(f"train.device={args.device}")
    # unknown keys fail here, naming the closest valid key
    cfg = resolve_task(args.job, args.config, out, aliases=aliases)[1]
    if args.amp and cfg["train"]["amp"] not in ("bf16", "fp16"):
        out.append("train.amp=fp16")          # mmpretrain's --amp: AmpOptimWrapper, fp16 + dynamic loss scale
    if (any(k.split("=", 1)[0].strip() == MM_LR for k in args.cfg_options)
            and "optim.base_batch_size" not in given):
        t = cfg["train"]
        out.append(f"optim.base_batch_size={t['batch_size'] * t['accum_steps'] * world}")
    return out


def _world(args: argparse.Namespace) -> int:
    if _under_torchrun():
        return int(os.environ["WORLD_SIZE"])
    if args.launcher == "pytorch":
        return args.nproc_per_node or max(device_count(device_type(args.device or "auto")), 1)
    return 1


ERRORS_DIR = "MASKFEAT_LAUNCH_ERRORS"     # set by launch_torchrun: where its processes leave their error line


def launch_exit_code(codes: dict[int, int]) -> int:
    """The job's exit status from its failed processes' ({rank: exit code}; negative: killed by that
    signal): 2 when any ended on bad input, else a crash's code (1), else the signal's 128 + N."""
    values = list(codes.values())
    if 2 in values:
        return 2
    crashed = [c for c in values if c > 0 and c not in (130, 143)]
    signalled = [c if c > 0 else 128 - c for c in values if c not in crashed]
    return (crashed or signalled or [1])[0]


def _elastic_run(argv: list[str]) -> tuple[int, dict]:
    """torch.distributed.run in this process (torchrun's own code), its failures caught: (exit status,
    {rank: exit code} of the processes that failed); the elastic agent's own log lines are not shown."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    quiet = logging.getLogger("torch.distributed.elastic")
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as e:
        codes = {rank: int(f.exitcode) for rank, f in e.failures.items()}
        return launch_exit_code(codes), codes
    except SignalException as e:
        return 128 + int(e.sigval), {}
    return 0, {}


def _first_error(folder: str) -> str | None:
    """The error line the lowest rank left in ``folder`` (``report_error``), if any."""
    for name in sorted(os.listdir(folder), key=lambda n: int(n.removeprefix("rank") or 0)):
        text = (Path(folder) / name).read_text().strip()
        if text:
            return text
    return None


def report_error(prog: str, e: UserError) -> int:
    """In a process started by ``launch_torchrun``: its one error line, left for the launcher to say once."""
    rank, line = os.environ.get("RANK", "0"), f"{prog}: error: {one_line(e)}"
    try:
        Path(os.environ[ERRORS_DIR], f"rank{rank if rank.isdigit() else 0}").write_text(line + "\n")
    except OSError:                     # the launcher's folder is gone: say it here
        print(line, file=sys.stderr)
    return 2


def launch_torchrun(args: argparse.Namespace, overrides: list[str]) -> int:
    """Start ``nproc`` copies of this command through torch.distributed.run (in this process) and wait for
    them: exit 2 with the first rank's one line when a process ended on bad input, no elastic traceback."""
    nproc = _world(args)
    argv = ["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "-m", "maskfeat.commands.run",
            "--config", args.config, "--job", args.job, "--launcher", "pytorch"]
    if overrides:
        argv += ["--cfg-options", *overrides]
    print("launching: torch.distributed.run " + " ".join(argv), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="maskfeat-launch-") as errors:
        os.environ[ERRORS_DIR] = errors
        try:
            code, codes = _elastic_run(argv)
        finally:
            os.environ.pop(ERRORS_DIR, None)
        message = _first_error(errors)
    if code == 2 and message:
        print(message, file=sys.stderr)
    elif code == 1:
        rank, failed = next(iter(codes.items()), (0, 1))
        print(f"run_maskfeat: error: process rank {rank} failed (exit code {failed}); its output is above",
              file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    if args.nproc_per_node is not None and args.nproc_per_node < 1:
        raise UserError("--nproc-per-node must be >= 1")
    if args.nproc_per_node and args.launcher != "pytorch":
        raise UserError("--nproc-per-node needs --launcher pytorch")
    if args.launcher == "slurm":
        slurm_env()                                          # RANK, WORLD_SIZE, ... for this task
    pick_recipe(args)
    world = _world(args)
    overrides = translate(args, world)
    task, cfg = resolve_task(args.job, args.config, overrides)      # every check before processes start
    if args.launcher == "pytorch" and not _under_torchrun():
        preflight(task, cfg, world)                                 # the data, for `world` processes
        return launch_torchrun(args, overrides)
    run_task(args.job, args.config, overrides)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_maskfeat.py", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if os.environ.get(ERRORS_DIR) and _under_torchrun():      # one of launch_torchrun's processes
        return exit_code("run_maskfeat", lambda: _reporting(args))
    return exit_code("run_maskfeat", lambda: run(args))


def _reporting(args: argparse.Namespace) -> int:
    try:
        return run(args)
    except UserError as e:
        return report_error("run_maskfeat", e)


if __name__ == "__main__":
    sys.exit(main())
