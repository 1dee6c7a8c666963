"""``maskfeat linprobe``: a linear classifier on the frozen encoder's features (image only)."""
from __future__ import annotations

from .common import DIST, EVAL_INTERVAL, OPTIM, TRAIN
from .finetune import EVAL_CROP, EVAL_MODEL
from .labelled import LABELLED_DATA, POOL
from .spec import RATE, Job, choice, key, overlay

LINPROBE_JOB = Job("linprobe", shared={}, modalities={"image": {
    "model": {**EVAL_MODEL, "pool": POOL},
    "data": {**LABELLED_DATA, "cache_features": key(
        True, None, "embed once (eval transform), train on the vectors; false: augmented images through the "
        "frozen encoder")},
    "aug": EVAL_CROP,
    "optim": overlay({"name": key("sgd", choice("sgd", "lars"), "sgd | lars (MAE: lars, lr 0.1 per 256)"),
                      **OPTIM, "momentum": key(0.9, RATE, "SGD / LARS momentum")},
                     {"lr": 1.0, "weight_decay": 0.0, "clip_grad": 0.0, "warmup_epochs": 2.0, "min_lr": 0.0}),
    "train": overlay({**TRAIN, "eval_interval": EVAL_INTERVAL},
                     {"epochs": 20, "batch_size": 256, "output_dir": "work_dirs/linprobe",
                      "ckpt_interval": 10}),
    "dist": DIST,
}})
