"""Video fine-tuning row: the classifier (MViT pooling restored), the pre-trained encoder loaded,
RandAugment / mixup / cutmix / label smoothing and layer-wise lr decay, and multi-view evaluation
(clip-level and video-level top-1) every ``train.eval_interval`` epochs and at the end."""
from __future__ import annotations

import json

import torch
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from ..config import ConfigError
from ..config_checks import check_values
from ..data.loader import build_loader
from ..data.video_loader import build_video_classify_datasets
from ..engine.distributed import DistEnv, seed_everything
from ..engine.trainer import Trainer
from ..eval.classifier import VideoMixup, classifier_for
from ..eval.multiview import ViewEval
from ..eval.pretrained import load_pretrained
from .pretrain_video import VIDEO_ARCHS
from .steps import Normalise
from .training import start_trainer


class FinetuneStep:
    """Normalise on the device, mix the batch, return the classification loss."""

    def __init__(self, data: dict, num_classes: int, device: torch.device):
        self.normalise = Normalise(data["mean"], data["std"], device)
        self.device = device
        mixing = data["mixup"] > 0 or data["cutmix"] > 0
        self.mixup = (VideoMixup(num_classes, data["mixup"], data["cutmix"], data["label_smoothing"])
                      if mixing else None)
        self.loss = (SoftTargetCrossEntropy() if mixing
                     else nn.CrossEntropyLoss(label_smoothing=data["label_smoothing"]))

    def __call__(self, model, batch: dict) -> torch.Tensor:
        x = self.normalise(batch["images"])                               # (B, 3, T, H, W)
        y = batch["label"].to(self.device, non_blocking=True)
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        return self.loss(model(x), y)


def validate(cfg: dict) -> None:
    check_values(cfg, {"model.arch": VIDEO_ARCHS})   # pair checks: the even batch of Mixup / CutMix


def build_finetune_trainer(cfg: dict, env: DistEnv) -> tuple[Trainer, ViewEval]:
    seed = cfg["train"]["seed"]
    train_set, test_set, classes = build_video_classify_datasets(cfg)
    num_classes = cfg["model"]["num_classes"] or len(classes)
    if num_classes < len(classes):
        raise ConfigError(f"model.num_classes {num_classes} < {len(classes)} labels in the annotations")
    seed_everything(seed)
    model = classifier_for("video", cfg["model"], num_classes)
    report = (load_pretrained(model, cfg["model"]["pretrained"], "video") if cfg["model"]["pretrained"]
              else None)
    loader = build_loader(train_set, cfg["train"]["batch_size"], cfg["data"], env.rank, env.world, seed)
    seed_everything(seed, env.rank)
    step = FinetuneStep({**cfg["data"], **cfg["aug"]}, num_classes, env.device)
    views = ViewEval(cfg, env, test_set, step.normalise, num_classes)
    trainer = start_trainer(cfg, model, loader, env, step, layer_decay=cfg["optim"]["layer_decay"] or None,
                            on_epoch_end=views)
    if report is not None:
        trainer.logger.info(f"pretrained {cfg['model']['pretrained']}: missing {report.missing}, unexpected "
                            f"{report.unexpected}, interpolated {report.interpolated}, "
                            f"ignored {len(report.ignored)} pre-training-only keys "
                            f"({report.dropped or 'none dropped'})")
    trainer.logger.info(f"maskfeat finetune (video): {cfg['model']['arch']} {cfg['model']['num_frames']}x"
                        f"{cfg['model']['img_size']}px, {num_classes} classes, {len(train_set)} clips/epoch, "
                        f"test {len(test_set)} views -> {trainer.output_dir}")
    return trainer, views


def run(cfg: dict, env: DistEnv) -> dict:
    """Fine-tune and evaluate; returns (and writes to <output_dir>/eval.json) the last metrics."""
    trainer, views = build_finetune_trainer(cfg, env)
    trainer.fit()
    if env.is_main and views.results:
        (trainer.output_dir / "eval.json").write_text(json.dumps(views.results, indent=1) + "\n")
    return views.results
