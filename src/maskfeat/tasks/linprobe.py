"""Linear-probe row (image): linear probing of frozen features, as MAE does it: BatchNorm
(no affine) + Linear on the cls or mean-pooled token of the frozen encoder, LARS (or SGD),
RandomResizedCrop + flip. With ``data.cache_features: true`` the images are embedded once
(eval transform) and the probe trains on the stored vectors: minutes instead of hours."""
from __future__ import annotations

import json

import torch

from ..config_checks import check_values
from ..data.features import FeatureDataset
from ..data.loader import build_loader
from ..engine.distributed import DistEnv, seed_everything
from ..engine.optim import scaled_lr
from ..engine.trainer import amp_dtype
from ..errors import UserError
from ..eval.classifier import ClassificationStep, LinearProbe, ProbeHead
from ..eval.frozen import (
    build_frozen_features,
    embed_splits,
    eval_loader,
    labelled_datasets,
    num_classes_of,
)
from ..eval.lars import build_probe_optimizer
from ..eval.validation import BestTracker, EpochEval
from .evaluation import EVAL_RULES
from .training import start_trainer


def validate(cfg: dict) -> None:
    check_values(cfg, EVAL_RULES)
    if cfg["train"]["batch_size"] < 2:
        raise UserError("train.batch_size: BatchNorm needs at least 2 samples per batch")


def _vector_data(data: dict) -> dict:
    return dict(data, num_workers=0, persistent_workers=False, pin_memory=False)   # tensors in memory


def _train(cfg: dict, env, model, loader, val_loader, key: str, num_classes: int) -> dict:
    """Train ``model`` (a LinearProbe, or a ProbeHead on vectors) with the Trainer; the metrics."""
    t = cfg["train"]
    seed_everything(t["seed"], env.rank)
    tracker = BestTracker()
    on_epoch = EpochEval(val_loader, env, tracker, interval=t["eval_interval"], input_key=key)
    step = ClassificationStep(torch.nn.CrossEntropyLoss(), env.device, input_key=key)
    trainer = start_trainer(cfg, model, loader, env, step, on_epoch_end=on_epoch,
                            extra_state={"best": tracker}, build_optim=build_probe_optimizer)
    peak = scaled_lr(cfg["optim"], trainer.global_batch)
    trainer.logger.info(f"maskfeat linprobe: {cfg['model']['pool']} token, {num_classes} classes, "
                        f"{len(loader.dataset)} train / {len(val_loader.dataset)} val"
                        f"{' (cached features)' if key == 'features' else ''}, "
                        f"{trainer.iters_per_epoch} steps/epoch "
                        f"x {t['epochs']} epochs, {cfg['optim']['name']} lr {peak:.3g}")
    trainer.fit()
    result = {"best_top1": tracker.best, "best_epoch": tracker.best_epoch, "history": on_epoch.history,
              "last_top1": on_epoch.history[-1]["val_top1"] if on_epoch.history else None,
              "steps": trainer.state.step, "pool": cfg["model"]["pool"],
              "pretrained": cfg["model"]["pretrained"],
              "cached_features": key == "features"}
    if env.is_main:
        (trainer.output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def probe_on_features(cfg: dict, env, feats: dict, num_classes: int) -> dict:
    """Linear probe on stored vectors: feats {'train': (f (N, D), y (N,)), 'val': ...}."""
    t = cfg["train"]
    train, val = (FeatureDataset(*(x.cpu() for x in feats[k])) for k in ("train", "val"))
    seed_everything(t["seed"])                                # same head init on every rank
    head = ProbeHead(train.features.shape[1], num_classes)
    vec = _vector_data(cfg["data"])
    return _train(cfg, env, head, build_loader(train, t["batch_size"], vec, env.rank, env.world, t["seed"]),
                  eval_loader(val, t["batch_size"], vec, env, t["seed"]), "features", num_classes)


def run(cfg: dict, env: DistEnv) -> dict:
    data, t = cfg["data"], cfg["train"]
    seed = t["seed"]
    seed_everything(seed)
    features, img_size, report = build_frozen_features(cfg["model"], env)
    if data["cache_features"]:
        feats, num_classes = embed_splits(features, labelled_datasets(data, img_size, seed), data,
                                          t["batch_size"], env, seed, amp_dtype(t["amp"], env.device),
                                          t["progress"])
        env.print_main(report)                        # once the data has passed its checks
        return probe_on_features(cfg, env, feats, cfg["model"]["num_classes"] or num_classes)
    train_set, val_set = labelled_datasets(data, img_size, seed, train_aug=cfg["aug"])
    env.print_main(report)
    num_classes = num_classes_of(cfg["model"], train_set.split, val_set.split)
    model = LinearProbe(features, num_classes)
    return _train(cfg, env, model, build_loader(train_set, t["batch_size"], data, env.rank, env.world, seed),
                  eval_loader(val_set, t["batch_size"], data, env, seed), "images", num_classes)

