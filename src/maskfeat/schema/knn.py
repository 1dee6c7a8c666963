"""``maskfeat knn``: weighted k-nearest-neighbour accuracy of the frozen encoder's features (image only)."""
from __future__ import annotations

from .common import DIST, MODULES, TRAIN
from .finetune import EVAL_MODEL
from .labelled import KNN, LABELLED_DATA, POOL
from .spec import AMP, POSITIVE_INT, Job, key

KNN_JOB = Job("knn", shared={}, modalities={"image": {
    "model": {k: EVAL_MODEL[k] for k in ("arch", "img_size", "patch_size")} | {
        "pool": POOL, "pretrained": EVAL_MODEL["pretrained"]},
    "data": LABELLED_DATA,
    "knn": KNN,
    "eval": {
        "batch_size": key(128, POSITIVE_INT, "per process"),
        "device": TRAIN["device"],
        "device_modules": key([], MODULES, "as train.device_modules"),
        "amp": key("auto", AMP, "as train.amp"),
        "seed": TRAIN["seed"],
        "output_dir": key("work_dirs/knn", None, "the run folder"),
        "save_features": key(False, None, "also write <output_dir>/features.pth (features and labels)"),
        "progress": TRAIN["progress"],
    },
    "dist": DIST,
}})
