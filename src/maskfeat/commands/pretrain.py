"""``maskfeat pretrain``: MaskFeat pre-training (image; video with ``modality: video``)."""
from __future__ import annotations

import argparse
import os

import torch

from ..config import resolve_config
from ..data import build_loader, build_pretrain_dataset, build_pretrain_loader
from ..defaults import PRETRAIN
from ..engine.distributed import distributed_session, seed_everything
from ..engine.trainer import Trainer
from ..errors import UserError
from ..models import build_pretrain_model
from ..video.defaults import VIDEO_PRETRAIN, is_video
from ..video.loader import build_video_pretrain_dataset
from ..video.model import build_video_model
from .common import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "a small ViT on scikit-image's bundled photos")


class PretrainStep:
    """Moves a uint8 batch to the device, normalises it there and returns the MaskFeat loss.

    ``decoder`` (data.decode=device, a ``DeviceDecoder``) decodes a batch that still carries JPEG
    bytes; ``build_pretrain_loader`` normally hands over batches already decoded (so that the
    trainer counts files that fail on the device), and then ``decode`` only returns 'images'.
    """

    def __init__(self, mean, std, device: torch.device, decoder=None):
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=device).view(shape) * 255.0
        self.std = torch.tensor(std, device=device).view(shape) * 255.0
        self.device, self.decoder = device, decoder

    def decode(self, batch: dict) -> torch.Tensor:
        """The batch's uint8 images (B, 3, [T,] H, W), decoded on the device if it carries JPEG bytes."""
        if "jpeg" in batch:
            if self.decoder is None:
                raise ValueError("PretrainStep: a batch of JPEG bytes (data.decode=device) but no decoder")
            with torch.autocast(self.device.type, enabled=False):
                return self.decoder(batch)["images"]
        return batch["images"]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float()            # (B, 3, [T,] H, W)
        extra = x.dim() - self.mean.dim()
        mean, std = (self.mean, self.std) if not extra else (self.mean[..., None], self.std[..., None])
        return (x - mean) / std

    def __call__(self, model, batch: dict) -> torch.Tensor:
        x = self.normalise(self.decode(batch))
        mask = batch["mask"].to(self.device, non_blocking=True)
        return model(x, mask).loss


def build_config(config_path: str | None, overrides) -> dict:
    if is_video(config_path, overrides):
        return resolve_config(VIDEO_PRETRAIN, config_path, overrides)
    return resolve_config(PRETRAIN, config_path, overrides)


def validate(cfg: dict) -> None:
    m = cfg["model"]
    if m["img_size"] % m["patch_size"]:
        raise UserError(f"model.img_size {m['img_size']} is not divisible by model.patch_size {m['patch_size']}")
    t, data = cfg["train"], cfg["data"]
    if t["batch_size"] < 1 or t["accum_steps"] < 1:
        raise UserError("train.batch_size and train.accum_steps must be >= 1")
    world = int(os.environ.get("WORLD_SIZE", "1"))   # torchrun's, known before any process group
    if cfg.get("modality") != "video" and data.get("source") == "skimage" \
            and data["samples_per_epoch"] < t["batch_size"] * t["accum_steps"] * world:
        raise UserError(f"data.samples_per_epoch: {data['samples_per_epoch']} samples are fewer than one global batch "
                        f"(train.batch_size {t['batch_size']} x train.accum_steps {t['accum_steps']} x {world} processes)")


def build_trainer(cfg: dict, env) -> Trainer:
    """Model, data and engine for one process of a pre-training run."""
    seed = cfg["train"]["seed"]
    seed_everything(seed)                      # identical initial weights on every rank
    video = cfg.get("modality") == "video"
    model = build_video_model(cfg) if video else build_pretrain_model(cfg, env.device)
    dataset = build_video_pretrain_dataset(cfg) if video else build_pretrain_dataset(cfg)
    if video:
        loader = build_loader(dataset, cfg["train"]["batch_size"], cfg["data"], env.rank, env.world, seed)
    else:                                      # data.decode=device: batches arrive decoded on env.device
        loader = build_pretrain_loader(dataset, cfg, env.rank, env.world, env.device)
    seed_everything(seed, env.rank)            # distinct streams per rank from here on
    step = PretrainStep(cfg["data"]["mean"], cfg["data"]["std"], env.device, decoder=getattr(loader, "decoder", None))
    zero = 1.0 / cfg["hog"]["nbins"] if cfg["model"].get("target", "hog") == "hog" else None
    trainer = Trainer(cfg, model, loader, env, step, zero_level=zero)
    trainer.logger.info(f"maskfeat pretrain: {cfg['model']['arch']} {cfg['model']['img_size']}px, "
                        f"{len(dataset)} samples/epoch, {trainer.iters_per_epoch} steps/epoch x "
                        f"{cfg['train']['epochs']} epochs, global batch {trainer.global_batch}, "
                        f"device {env.device}, world {env.world} -> {trainer.output_dir}")
    return trainer


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args.config, args.overrides)
    validate(cfg)
    with distributed_session(cfg["train"]["device"]) as env:
        build_trainer(cfg, env).fit()
    return 0
