"""Every config key a command knows, with its default: the schema that recipes override.

``maskfeat pretrain`` with no ``--config`` runs exactly PRETRAIN: a small ViT on the
photos bundled with scikit-image, minutes on a laptop CPU.
"""
from __future__ import annotations

from PIL import Image

IMAGENET_MEAN = [0.485, 0.456, 0.406]
MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS)    # PIL's decompression-bomb threshold (89,478,485 pixels)
IMAGENET_STD = [0.229, 0.224, 0.225]

# data.source=shards (see maskfeat.data.shard_stream and README "Large datasets").
SHARD_KEYS = {
    # '' = the shards beside the manifest; else a brace pattern, one path / URL per manifest shard, e.g.
    # '/mnt/in1k/shard-{000000..001023}.tar' or 'pipe:aws s3 cp s3://b/shard-{000000..001023}.tar -'
    "shards": "",
    "manifest": "",                  # '' = <data.root>/manifest.json (from maskfeat prepare; a local file)
    "allow_pipe": False,             # true: allow 'pipe:' URLs in data.shards: they run shell commands
    "shuffle_buffer": 1000,          # samples each loader worker draws from at random (memory!); 0 = off
}

# model.encoder and its decoder, in both PRETRAIN (image) and VIDEO_PRETRAIN.
ENCODER_KEYS = {
    "encoder": "full",               # full: every patch through the encoder, masked ones as the mask token (MaskFeat)
                                     # visible: the encoder sees the unmasked patches only and a light decoder, given
                                     # mask tokens, predicts the masked ones (MAE's design: the encoder's cost falls
                                     # with mask.ratio; ViT and video ViT only, MViT stays full)
    "decoder_dim": 0,                # visible: decoder width (0 = half the encoder's)
    "decoder_depth": 2,              # visible: decoder blocks
    "decoder_heads": 0,              # visible: decoder attention heads (0 = decoder_dim / 64, at least 1)
}

# torch.distributed (torchrun) backend: auto = torch's default for the device type (nccl, xccl, hccl...);
# gloo on CPU; or a name
DIST = {"backend": "auto"}

PRETRAIN = {
    "modality": "image",             # image | video (maskfeat.video.defaults.VIDEO_PRETRAIN)
    "model": {
        "arch": "vit-mini",          # see maskfeat.models.ARCHS
        "img_size": 112,
        "patch_size": 16,
        "drop_path_rate": 0.0,
        "target": "hog",             # hog | pixel (the paper's ablation)
        "decay_pos_embed": True,     # mmpretrain decays pos_embed and cls_token
        **ENCODER_KEYS,
    },
    "hog": {
        "nbins": 9,
        "cell_size": 8,
        "gaussian_window": 16,       # 0 = none (official SlowFast); 16 = mmpretrain
        "impl": "auto",              # auto (compiled on CUDA, eager on CPU) | compiled (torch.compile, one fused kernel) | eager
    },
    "mask": {
        "ratio": 0.4,
        "min_num_patches": 4,        # 15 on the 14x14 grid of 224 px
        "min_aspect": 0.3,
        "max_aspect": None,          # None = 1 / min_aspect
    },
    "data": {
        "source": "skimage",         # skimage | folder | list | shards (WebDataset tars from maskfeat prepare)
        "root": "",                  # folder: image tree (class sub-folders or flat); list: data_root; shards: --out
        "ann_file": "meta/train.txt",  # list: 'relative/path label' per line, relative to root
        "train_split": "",           # folder / list: the sub-folder of root holding the images ('' = root itself);
                                     # list: the lines' paths are relative to it (mmpretrain's data_prefix 'train/')
        "samples_per_epoch": 1024,   # skimage: length of one epoch of the endless crop stream
        "scale": [0.5, 1.0],
        "ratio": [0.75, 1.3333333333333333],
        "hflip": 0.5,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "num_workers": 2,
        "pin_memory": True,
        "persistent_workers": True,
        "max_bad_fraction": 0.01,    # stop when more than this share of images fail to decode
        "max_image_pixels": MAX_IMAGE_PIXELS,   # skip (count, name) images whose header claims more pixels
                                     # (decompression bombs); 0 = no limit of ours (PIL still refuses 2x its own)
        "shuffle": True,             # false: read in the data set's order (files: index order; shards: manifest's)
        **SHARD_KEYS,
        # cpu | device. cpu: the loader workers decode, crop and flip every image (libjpeg / PIL).
        # device: JPEGs are decoded on the training device by torchvision.io.decode_jpeg, one batched
        # call per batch (nvJPEG on a GPU), then cropped and flipped there; the workers only read the
        # file bytes and the JPEG header size and draw the crop and the mask (the same crops as cpu).
        # Other files (PNG, CMYK, truncated, ...) are still decoded by the workers. For JPEG data sets
        # on a GPU when CPU decoding is the bottleneck (data_time high, few CPU cores per GPU);
        # source folder, list or skimage only; needs torchvision>=0.19.
        "decode": "cpu",
    },
    "optim": {
        "lr": 2.0e-3,                # per optim.base_batch_size images; scaled by the global batch
        "base_batch_size": 256,
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "eps": 1.0e-8,
        "clip_grad": 0.02,           # total L2 norm; 0 = off
        "warmup_epochs": 1.0,
        "warmup_start_factor": 1.0e-6,
        "min_lr": 1.0e-6,
    },
    "train": {
        "epochs": 12,
        "batch_size": 32,            # per process
        "accum_steps": 1,
        "amp": "auto",               # auto (bf16 if supported, else fp16; cpu: fp32) | bf16 | fp16 | none
        "compile": False,            # torch.compile the whole model (HOG, encoder, head, loss); falls back to eager on failure
        "compile_mode": "default",   # torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs
        "seed": 0,
        "device": "auto",            # auto (the accelerator, else cpu) | cpu | type[:index]: cuda:1, npu, ...
        "device_modules": [],        # plugins imported before choosing the device (torch_npu, ...)
        "output_dir": "work_dirs/maskfeat_vit-mini_skimage",
        "log_interval": 10,
        "ckpt_interval": 5,          # epochs between numbered checkpoints ('last' is written every epoch)
        # auto: continue from <output_dir>/last.pth if there is one (a finished run: nothing to do, exit 0);
        # a path: continue from that checkpoint; '': from scratch (refused if output_dir holds a run)
        "resume": "auto",
        "overwrite": False,          # start from scratch over a run in output_dir, removing its files
        "max_steps": 0,              # stop after this many optimizer steps (0 = run all epochs)
        "max_nonfinite": 10,         # consecutive non-finite steps before the run stops
        "progress": True,            # tqdm bar on stderr, shown only when stderr is a terminal
        "text_log": "auto",          # text line per log on stdout: auto (when not a tty) | always | never
    },
    "dist": dict(DIST),
}


# -- evaluation of the features (maskfeat finetune / linprobe / knn) ----------------------------

# Labelled data, shared by the three commands (see maskfeat.data.labelled).
_LABELLED_DATA = {
    "source": "fashion-mnist",       # folder | list | idx | fashion-mnist | shards (maskfeat prepare per split)
    "root": "",                      # folder: root/<split>/<class>/...; list: data_root; idx: folder of IDX files
    "train_split": "train",          # folder: sub-folder; list: image prefix under root; idx: file prefix
    "val_split": "val",              # idx: 'val' also finds 't10k-*' (MNIST-style test files)
    "train_ann_file": "meta/train.txt",  # list: 'relative/path label' lines, relative to root
    "val_ann_file": "meta/val.txt",
    "train_subset": 0,               # use a fixed random subset of this many samples (0 = all)
    "val_subset": 0,
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "interpolation": "bicubic",
    "crop_pct": 1.0,                 # eval: resize to img_size / crop_pct, centre crop (ImageNet: 0.875, 256 -> 224)
    "num_workers": 2,
    "pin_memory": True,
    "persistent_workers": True,
    "max_bad_fraction": 0.01,        # stop when more than this share of a split's images are unreadable
    "max_image_pixels": MAX_IMAGE_PIXELS,   # images whose header claims more pixels are unreadable (0 = no limit)
    "shuffle": True,                 # training split: false = in the data set's order (evaluation always is)
    **SHARD_KEYS,                    # shards: root/<split>/ holds a split's shards; '{split}' in data.shards / manifest
}

# The checkpoint `maskfeat pretrain` writes with no --config: the evaluation commands read it by default.
DEFAULT_PRETRAINED = "work_dirs/maskfeat_vit-mini_skimage/last.pth"

# `maskfeat finetune` with no --config: the default pre-training's ViT on Fashion-MNIST, 10 epochs
# (a quick CPU try: data.train_subset=2000 data.val_subset=2000).
FINETUNE = {
    "modality": "image",             # image | video (maskfeat.video.defaults.VIDEO_FINETUNE)
    "model": {
        "arch": "",                  # '' = as pre-trained (read from the checkpoint)
        "img_size": 0,               # 0 = as pre-trained; pos_embed is resampled when it differs
        "patch_size": 0,             # 0 = as pre-trained
        "num_classes": 0,            # 0 = from the data
        "global_pool": "avg",        # avg (mean of patch tokens + fc-norm) | token (cls)
        "drop_path_rate": 0.1,
        "head_init_std": 2.0e-5,     # mmpretrain / MAE trunc-normal std of the new head
        "pretrained": DEFAULT_PRETRAINED,   # a `maskfeat pretrain` checkpoint ('' = random init: set arch / sizes)
        "ema": False,                # keep a timm ModelEmaV3 of the weights, evaluated too
        "ema_decay": 0.9999,
    },
    "data": dict(_LABELLED_DATA),
    "aug": {
        "scale": [0.08, 1.0],
        "ratio": [0.75, 1.3333333333333333],
        "hflip": 0.5,
        "auto_augment": "rand-m9-mstd0.5-inc1",   # '' = no RandAugment
        "color_jitter": 0.4,         # after RandAugment, as mmpretrain's MaskFeat recipe; 0 = off (DeiT / MAE)
        "re_prob": 0.25,             # random erasing
        "re_mode": "pixel",
        "re_count": 1,
        "mixup": 0.8,                # alpha; 0 = off
        "cutmix": 1.0,               # alpha; 0 = off
        "mixup_prob": 1.0,
        "mixup_switch_prob": 0.5,    # Mixup or CutMix, one per batch
        "mixup_mode": "batch",
        "label_smoothing": 0.1,
    },
    "optim": {
        "lr": 2.0e-3,                # per optim.base_batch_size images (8e-3 at 2048)
        "base_batch_size": 512,
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "eps": 1.0e-8,
        "layer_decay": 0.65,         # lr scale layer_decay^(L + 1 - level); 0 or 1 = off
        "clip_grad": 0.0,
        "warmup_epochs": 1.0,        # 20 in the ImageNet recipe
        "warmup_start_factor": 1.0e-4,
        "min_lr": 1.0e-6,
    },
    "train": dict(PRETRAIN["train"], epochs=10, batch_size=64, output_dir="work_dirs/finetune",
                  ckpt_interval=10, eval_interval=1),
    "dist": dict(DIST),
}

LINPROBE = {
    "modality": "image",             # image only
    "model": {
        "arch": "",                  # '' = as pre-trained
        "img_size": 0,
        "patch_size": 0,
        "num_classes": 0,            # 0 = from the data
        "pool": "cls",               # cls token | avg of patch tokens (after the final norm)
        "pretrained": DEFAULT_PRETRAINED,   # '' = random init (a baseline: set arch / sizes)
    },
    "data": dict(_LABELLED_DATA, cache_features=True),    # embed once (eval transform), train on the vectors;
                                                          # false: augmented images through the frozen encoder
    "aug": {"scale": [0.08, 1.0], "ratio": [0.75, 1.3333333333333333], "hflip": 0.5},
    "optim": {
        "name": "sgd",               # sgd | lars (MAE's recipe: lars, lr 0.1 per 256, 90 epochs)
        "lr": 1.0,                   # per base_batch_size
        "base_batch_size": 256,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "clip_grad": 0.0,
        "warmup_epochs": 2.0,
        "warmup_start_factor": 1.0e-6,
        "min_lr": 0.0,
        "betas": [0.9, 0.999],       # unused by lars / sgd (kept for the shared optimizer schema)
        "eps": 1.0e-8,
    },
    "train": dict(PRETRAIN["train"], epochs=20, batch_size=256, output_dir="work_dirs/linprobe",
                  ckpt_interval=10, eval_interval=1),
    "dist": dict(DIST),
}

KNN = {
    "modality": "image",             # image only
    "model": {k: LINPROBE["model"][k] for k in ("arch", "img_size", "patch_size", "pool", "pretrained")},
    "data": dict(_LABELLED_DATA),
    "knn": {"k": 20, "temperature": 0.07},
    "eval": {
        "batch_size": 128,           # per process
        "device": "auto",            # as train.device
        "device_modules": [],        # as train.device_modules
        "amp": "auto",
        "seed": 0,
        "output_dir": "work_dirs/knn",
        "save_features": False,      # also write <output_dir>/features.pth (train / val features and labels)
        "progress": True,
    },
    "dist": dict(DIST),
}
