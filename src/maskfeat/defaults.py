"""Every config key a command knows, with its default: the schema that recipes override.

``maskfeat pretrain`` with no ``--config`` runs exactly PRETRAIN: a small ViT on the
photos bundled with scikit-image, minutes on a laptop CPU.
"""
from __future__ import annotations

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

PRETRAIN = {
    "model": {
        "arch": "vit-mini",          # see maskfeat.models.ARCHS
        "img_size": 112,
        "patch_size": 16,
        "drop_path_rate": 0.0,
        "target": "hog",             # hog | pixel (the paper's ablation)
        "decay_pos_embed": True,     # mmpretrain decays pos_embed and cls_token
    },
    "hog": {
        "nbins": 9,
        "cell_size": 8,
        "gaussian_window": 16,       # 0 = none (official SlowFast); 16 = mmpretrain
    },
    "mask": {
        "ratio": 0.4,
        "min_num_patches": 4,        # 15 on the 14x14 grid of 224 px
        "min_aspect": 0.3,
        "max_aspect": None,          # None = 1 / min_aspect
    },
    "data": {
        "source": "skimage",         # skimage | folder | list
        "root": "",                  # folder: image tree (class sub-folders or flat); list: data_root
        "ann_file": "meta/train.txt",  # list: 'relative/path label' per line, relative to root
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
        "amp": "auto",               # auto | bf16 | fp16 | none (auto: bf16 on a GPU that has it, else fp16; fp32 on CPU)
        "compile": False,
        "seed": 0,
        "device": "auto",            # auto | cpu | cuda
        "output_dir": "work_dirs/maskfeat_vit-mini_skimage",
        "log_interval": 10,
        "ckpt_interval": 5,          # epochs between numbered checkpoints ('last' is written every epoch)
        "resume": "",                # '' | auto | path to a checkpoint
        "max_steps": 0,              # stop after this many optimizer steps (0 = run all epochs)
        "max_nonfinite": 10,         # consecutive non-finite steps before the run stops
        "progress": True,
    },
}
