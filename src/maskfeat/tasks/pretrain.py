"""Pre-training, whatever the modality: the row's model and data builders, the MaskFeat step, the Trainer.

A pre-training row's module provides ``validate(cfg)`` and hands its builders to this module as a
``PretrainRow`` (``build_model(cfg, device)``, ``build_data(cfg, env) -> (dataset, loader)``),
whose ``run`` and ``build_trainer`` it exports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from ..config_checks import Rule, check_values
from ..data.loader import build_loader
from ..engine.distributed import DistEnv, seed_everything
from ..engine.trainer import Trainer, steps_per_epoch
from ..errors import ConfigError, UserError
from . import resolve_task
from .monitor import build_monitor
from .steps import PretrainStep
from .training import start_trainer


def build_config(config_path: str | None, overrides: Iterable[str] = ()) -> dict:
    """The resolved, validated pre-training config (image or video, as ``modality`` says)."""
    return resolve_task("pretrain", config_path, overrides)[1]


def check_pretrain(cfg: dict, arch: Rule) -> None:
    """The checks every pre-training row shares: every key's range, the architecture, the patch grid."""
    check_values(cfg, {"model.arch": arch})
    m = cfg["model"]
    if m["img_size"] % m["patch_size"]:
        raise UserError(f"model.img_size {m['img_size']} is not divisible by "
                        f"model.patch_size {m['patch_size']}")


@dataclass(frozen=True)
class PretrainRow:
    """One modality's pre-training builders, handed to the job's runner by the row's module."""
    build_model: Callable          # (cfg, device) -> the MaskFeat model
    build_data: Callable           # (cfg, env) -> (dataset, loader)
    list_data: Callable            # (cfg) -> the dataset (its files listed, nothing decoded)

    def build_trainer(self, cfg: dict, env: DistEnv) -> Trainer:
        return build_trainer(cfg, env, self)

    def preflight(self, cfg: dict, world: int) -> None:
        """What ``world`` processes would check first, checked once (a launcher's parent): the data
        listed and an epoch holding one optimizer step per process."""
        t = cfg["train"]
        loader = build_loader(self.list_data(cfg), t["batch_size"], cfg["data"], 0, world, t["seed"])
        steps_per_epoch(loader.samples_per_rank, t["batch_size"], t["accum_steps"])

    def run(self, cfg: dict, env: DistEnv) -> dict:
        state = build_trainer(cfg, env, self).fit()
        return {"steps": state.step}


def build_trainer(cfg: dict, env: DistEnv, row: PretrainRow) -> Trainer:
    """Model, data and engine for one process of a pre-training run, on its run folder."""
    seed = cfg["train"]["seed"]
    seed_everything(seed)                      # identical initial weights on every rank
    try:
        model = row.build_model(cfg, env.device)
    except ValueError as e:                    # shapes the checks above cannot see (HOG cells, windows)
        raise ConfigError(str(e)) from None
    dataset, loader = row.build_data(cfg, env)
    monitor = build_monitor(cfg, env)          # the k-NN monitor's data checked before the run folder
    seed_everything(seed, env.rank)            # distinct streams per rank from here on
    step = PretrainStep(cfg["data"]["mean"], cfg["data"]["std"], env.device,
                        decoder=getattr(loader, "decoder", None))
    trainer = start_trainer(cfg, model, loader, env, step, **monitor)
    trainer.logger.info(f"maskfeat pretrain: {cfg['model']['arch']} {cfg['model']['img_size']}px, "
                        f"{len(dataset)} samples/epoch, {trainer.iters_per_epoch} steps/epoch x "
                        f"{cfg['train']['epochs']} epochs, global batch {trainer.global_batch}, "
                        f"device {env.device}, world {env.world} -> {trainer.output_dir}")
    return trainer
