"""Image fine-tuning row (SPEC section 4) on timm's pieces: mean-pooled tokens + fc-norm, drop path,
layer-wise lr decay, RandAugment / random erasing, Mixup / CutMix with label smoothing, optional EMA,
top-1 / top-5 every epoch and the best checkpoint kept (``best.pth``)."""
from __future__ import annotations

import json

from timm.utils import ModelEmaV3

from ..config_checks import check_values
from ..data.loader import build_loader
from ..engine.distributed import DistEnv, seed_everything
from ..eval.classifier import (
    ClassificationStep,
    build_criterion,
    build_mixup,
    classifier_for,
)
from ..eval.frozen import eval_loader, labelled_datasets, num_classes_of
from ..eval.pretrained import load_encoder_into, read_pretrained, resolve_model_shape
from ..eval.validation import BestTracker, EpochEval
from .evaluation import EVAL_RULES
from .training import start_trainer


def validate(cfg: dict) -> None:
    check_values(cfg, EVAL_RULES)            # its pair checks include the even batch of Mixup / CutMix


def run(cfg: dict, env: DistEnv) -> dict:
    """Fine-tune as ``cfg`` says; returns the last and best validation metrics."""
    m, t = cfg["model"], cfg["train"]
    seed = t["seed"]
    seed_everything(seed)                                   # identical initial weights on every rank
    pre = read_pretrained(m["pretrained"]) if m["pretrained"] else None
    arch, img, patch = resolve_model_shape(m, pre)
    train_set, val_set = labelled_datasets(cfg["data"], img, seed, train_aug=cfg["aug"])
    num_classes = num_classes_of(m, train_set.split, val_set.split)
    model = classifier_for("image", {**m, "arch": arch, "img_size": img, "patch_size": patch}, num_classes)
    loaded = load_encoder_into(model, pre) if pre is not None else None
    loader = build_loader(train_set, t["batch_size"], cfg["data"], env.rank, env.world, seed)
    val_loader = eval_loader(val_set, t["batch_size"], cfg["data"], env, seed)
    seed_everything(seed, env.rank)                         # distinct augmentation / mixup streams per rank
    mixup = build_mixup(cfg["aug"], num_classes)
    step = ClassificationStep(build_criterion(cfg["aug"]["label_smoothing"], mixup is not None), env.device,
                              mixup)
    tracker = BestTracker()
    ema = ModelEmaV3(model.to(env.device), decay=m["ema_decay"]) if m["ema"] else None
    extra = {"best": tracker} if ema is None else {"ema": ema, "best": tracker}
    on_epoch = EpochEval(val_loader, env, tracker, ema, t["eval_interval"])
    on_step = (lambda tr: ema.update(tr.model, step=tr.state.step)) if ema is not None else None
    layer_decay = cfg["optim"]["layer_decay"]
    trainer = start_trainer(cfg, model, loader, env, step, on_epoch_end=on_epoch, extra_state=extra,
                            layer_decay=layer_decay if 0 < layer_decay < 1 else None, on_step_end=on_step)
    env.print_main(f"finetune {arch} {img}px: "
                   + (loaded.summary(pre.path) if loaded else "random init (no model.pretrained)"))
    trainer.logger.info(f"maskfeat finetune: {arch} {img}px, {num_classes} classes, {len(train_set)} train / "
                        f"{len(val_set)} val, {trainer.iters_per_epoch} steps/epoch x {t['epochs']} epochs, "
                        f"global batch {trainer.global_batch}, device {env.device} -> {trainer.output_dir}")
    trainer.fit()
    result = {"best_top1": tracker.best, "best_epoch": tracker.best_epoch, "history": on_epoch.history,
              "steps": trainer.state.step, "num_classes": num_classes, "pretrained": m["pretrained"]}
    if ema is not None:
        result["best_ema_top1"] = tracker.best_ema
    if env.is_main:
        (trainer.output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
