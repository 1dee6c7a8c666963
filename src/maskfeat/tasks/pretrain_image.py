"""Image pre-training row: a ViT with a mask token on image crops (folder, list, skimage, IDX)."""
from __future__ import annotations

import os

from ..config_checks import choice
from ..data import build_pretrain_dataset, build_pretrain_loader
from ..engine.distributed import DistEnv
from ..errors import UserError
from ..models import ARCHS, build_pretrain_model
from .pretrain import PretrainRow, check_pretrain


def validate(cfg: dict) -> None:
    check_pretrain(cfg, choice(*ARCHS))
    m, t, data = cfg["model"], cfg["train"], cfg["data"]
    grid = m["img_size"] // m["patch_size"]
    if grid < 2 or round(grid * grid * cfg["mask"]["ratio"]) < 1:
        raise UserError(f"mask.ratio: {cfg['mask']['ratio']} of a {grid}x{grid} patch grid masks no patch "
                        f"(model.img_size {m['img_size']}, model.patch_size {m['patch_size']})")
    world = int(os.environ.get("WORLD_SIZE", "1"))   # torchrun's, known before any process group
    if data["source"] == "skimage" and data["samples_per_epoch"] < t["batch_size"] * t["accum_steps"] * world:
        raise UserError(f"data.samples_per_epoch: {data['samples_per_epoch']} samples are fewer than "
                        f"one global batch (train.batch_size {t['batch_size']} x "
                        f"train.accum_steps {t['accum_steps']} x {world} processes)")


def build_model(cfg: dict, device):
    return build_pretrain_model(cfg, device)


def build_data(cfg: dict, env: DistEnv):
    """(dataset, loader); with data.decode=device the loader's batches arrive decoded on env.device."""
    dataset = build_pretrain_dataset(cfg)
    return dataset, build_pretrain_loader(dataset, cfg, env.rank, env.world, env.device)


ROW = PretrainRow(build_model, build_data, build_pretrain_dataset)
run, build_trainer, preflight = ROW.run, ROW.build_trainer, ROW.preflight   # the row's builders at work
