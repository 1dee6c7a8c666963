"""``run_maskfeat.py`` / ``maskfeat run``: the model-zoo style front end of our training jobs.

    python run_maskfeat.py --config CONFIG [--launcher none|pytorch|slurm] [--nproc-per-node N]
        [--amp] [--device TYPE] [--resume [PATH]] [--work-dir DIR] [--cfg-options key=value ...]

CONFIG is one of our YAML recipes (pre-training) or the name of an mmpretrain MaskFeat config
(ZOO_CONFIGS: with or without folders and ``.py``), which stands for our recipe of the same job.
``--launcher pytorch`` starts ``--nproc-per-node`` processes with torch's own launcher
(``python -m torch.distributed.run --standalone``) unless this process already runs under
it. ``--launcher slurm``: each ``srun`` task is one process; its rank, world size, local rank and
master come from SLURM's variables (``engine/slurm.py``) and it runs the job in-process.
``--cfg-options`` takes our keys and mmpretrain's most used ones (MMPRETRAIN_ALIASES).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ..config import ConfigError, builtin_config
from ..engine.device import device_count, device_type
from ..engine.slurm import slurm_env
from ..errors import UserError, exit_code
from ..tasks import resolve_task, run_task

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
                   help="mixed precision (train.amp: bf16 on GPUs that have it, else fp16)")
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
        out.append("train.amp=auto")
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


def launch_torchrun(args: argparse.Namespace, overrides: list[str]) -> int:
    """Start ``nproc`` copies of this command through torch.distributed.run and wait for them."""
    nproc = _world(args)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc-per-node", str(nproc), "-m", "maskfeat.commands.run",
           "--config", args.config, "--job", args.job, "--launcher", "pytorch"]
    if overrides:
        cmd += ["--cfg-options", *overrides]
    print("launching: " + " ".join(cmd[2:]), file=sys.stderr, flush=True)
    return subprocess.call(cmd)


def run(args: argparse.Namespace) -> int:
    if args.nproc_per_node is not None and args.nproc_per_node < 1:
        raise UserError("--nproc-per-node must be >= 1")
    if args.nproc_per_node and args.launcher != "pytorch":
        raise UserError("--nproc-per-node needs --launcher pytorch")
    if args.launcher == "slurm":
        slurm_env()                                          # RANK, WORLD_SIZE, ... for this task
    pick_recipe(args)
    overrides = translate(args, _world(args))
    resolve_task(args.job, args.config, overrides)            # every check before processes start
    if args.launcher == "pytorch" and not _under_torchrun():
        return launch_torchrun(args, overrides)
    run_task(args.job, args.config, overrides)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_maskfeat.py", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return exit_code("run_maskfeat", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
