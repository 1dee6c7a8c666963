"""Video fine-tuning row: the classifier (MViT pooling restored), the pre-trained encoder loaded,
RandAugment / mixup / cutmix / label smoothing and layer-wise lr decay, and multi-view evaluation
(clip-level and video-level top-1) every ``train.eval_interval`` epochs and at the end."""
from __future__ import annotations

import json

import torch
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.utils.data import DataLoader

from ..config import ConfigError
from ..config_checks import check_values
from ..data.loader import build_loader
from ..engine.distributed import DistEnv, seed_everything
from ..engine.trainer import Trainer, amp_dtype
from ..video.classify import VideoMixup, build_video_classifier, evaluate_views, load_pretrained
from ..data.video_loader import build_video_classify_datasets
from .pretrain_video import VIDEO_ARCHS
from .steps import Normalise


class FinetuneStep:
    """Normalise on the device, mix the batch, return the classification loss."""

    def __init__(self, data: dict, num_classes: int, device: torch.device):
        self.normalise = Normalise(data["mean"], data["std"], device)
        self.device = device
        mixing = data["mixup"] > 0 or data["cutmix"] > 0
        self.mixup = VideoMixup(num_classes, data["mixup"], data["cutmix"], data["label_smoothing"]) if mixing else None
        self.loss = SoftTargetCrossEntropy() if mixing else nn.CrossEntropyLoss(label_smoothing=data["label_smoothing"])

    def __call__(self, model, batch: dict) -> torch.Tensor:
        x = self.normalise(batch["images"])                               # (B, 3, T, H, W)
        y = batch["label"].to(self.device, non_blocking=True)
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        return self.loss(model(x), y)


def test_loader(dataset, batch_size: int, workers: int, rank: int, world: int) -> DataLoader:
    """Every view exactly once across ranks: rank r takes items r, r + world, ..."""
    return DataLoader(dataset, batch_size=batch_size, sampler=list(range(rank, len(dataset), world)),
                      num_workers=workers, persistent_workers=False)


def validate(cfg: dict) -> None:
    check_values(cfg, {"model.arch": VIDEO_ARCHS})
    d, t = cfg["data"], cfg["train"]
    if (d["mixup"] > 0 or d["cutmix"] > 0) and t["batch_size"] % 2:
        raise ConfigError(f"train.batch_size must be even for mixup / cutmix, got {t['batch_size']}")


class ViewEval:
    """on_epoch_end: multi-view test every ``train.eval_interval`` epochs and at the end; keeps the last metrics."""

    def __init__(self, cfg: dict, env: DistEnv, test_set, step: FinetuneStep, num_classes: int):
        self.cfg, self.env, self.test_set, self.step, self.num_classes = cfg, env, test_set, step, num_classes
        t = cfg["train"]
        self.loader = test_loader(test_set, t["batch_size"], cfg["data"]["num_workers"], env.rank, env.world)
        self.results: dict = {}

    def __call__(self, trainer: Trainer, epoch: int) -> dict | None:
        if epoch % self.cfg["train"]["eval_interval"] and epoch != trainer.epochs:
            return None
        m = evaluate_views(trainer.model, self.loader, self.step.normalise, len(self.test_set.reader),
                           self.num_classes, self.env.device, amp_dtype(self.cfg["train"]["amp"], self.env.device))
        trainer.logger.info(f"epoch {epoch}: clip top-1 {m['clip_top1']:.2f}  video top-1 {m['video_top1']:.2f} "
                            f"({m['clips']} clips, {m['videos']} videos, {self.test_set.views} views each)")
        self.results.update(m, epoch=epoch)
        return {"clip_top1": m["clip_top1"], "video_top1": m["video_top1"]}


def build_finetune_trainer(cfg: dict, env: DistEnv) -> tuple[Trainer, ViewEval]:
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
    views = ViewEval(cfg, env, test_set, step, num_classes)
    trainer = Trainer(cfg, model, loader, env, step, layer_decay=cfg["optim"]["layer_decay"] or None,
                      on_epoch_end=views)
    if report is not None:
        trainer.logger.info(f"pretrained {cfg['pretrained']}: missing {report.missing}, unexpected "
                            f"{report.unexpected}, interpolated {report.interpolated}, ignored {len(report.ignored)} "
                            f"pre-training-only keys ({report.dropped or 'none dropped'})")
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
