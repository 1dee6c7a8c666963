"""Sections and keys every job (or several) shares: the training loop, the optimizer, torch.distributed,
the data loader, the shard keys, the crop, the encoder / decoder choice. A job lays its own defaults
on them (``overlay``)."""
from __future__ import annotations

from PIL import Image

from .spec import (
                   AMP,
                   BACKEND,
                   COUNT,
                   DEVICE,
                   FRACTION,
                   MODULES,
                   POSITIVE,
                   POSITIVE_INT,
                   RATE,
                   Rule,
                   choice,
                   key,
                   number,
                   pattern,
                   sequence,
)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
KINETICS_MEAN = [0.45, 0.45, 0.45]
KINETICS_STD = [0.225, 0.225, 0.225]
MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS)    # PIL's decompression-bomb threshold (89,478,485 pixels)

# The checkpoint `maskfeat pretrain` writes with no --config: the evaluation commands read it by default.
DEFAULT_PRETRAINED = "work_dirs/maskfeat_vit-mini_skimage/last.pth"

SCALE = sequence(number(0, 1, lo_open=True), 2, ordered=True)
RATIO = sequence(POSITIVE, 2, ordered=True)
CROP = {
    "scale": key([0.5, 1.0], SCALE, "RandomResizedCrop area range"),
    "ratio": key([0.75, 1.3333333333333333], RATIO, "RandomResizedCrop aspect range"),
    "hflip": key(0.5, FRACTION, "horizontal flip probability"),
}
NORMALISE = {
    "mean": key(IMAGENET_MEAN, sequence(number(), 3), "per-channel mean, images in [0, 1]"),
    "std": key(IMAGENET_STD, sequence(POSITIVE, 3), "per-channel std"),
}

# The data loader and the bad-sample budget.
LOADER = {
    "num_workers": key(2, COUNT, "loader worker processes"),
    "pin_memory": key(True, None, "pinned host memory for the copy to the device"),
    "persistent_workers": key(True, None, "keep the workers between epochs"),
    "max_bad_fraction": key(0.01, FRACTION, "stop when more than this share of samples are unreadable"),
}
SHUFFLE = key(True, None, "false: read in the data set's order (files: index order; shards: manifest's)")

# data.source=shards (see maskfeat.data.shard_stream and docs/pretraining.md "Large datasets").
SHARDS = {
    "shards": key("", None, "'' = the shards beside the manifest; else a brace pattern, one path / URL per "
                  "shard: '/mnt/in1k/shard-{000000..001023}.tar' or 'pipe:aws s3 cp s3://b/s-{0..9}.tar -'"),
    "manifest": key("", None, "'' = <data.root>/manifest.json (from maskfeat prepare; a local file)"),
    "allow_pipe": key(False, None, "true: allow 'pipe:' URLs in data.shards: they run shell commands"),
    "shuffle_buffer": key(1000, COUNT, "samples each loader worker draws from at random (memory!); 0 = off"),
}

# model.encoder and its decoder (pre-training, both modalities).
ENCODER = {
    "encoder": key("full", choice("full", "visible"),
                   "full: every patch through the encoder, masked ones as the mask token (MaskFeat); "
                   "visible: the encoder sees the unmasked patches, a light decoder predicts the masked "
                   "ones (MAE; ViT and video ViT only)"),
    "decoder_dim": key(0, COUNT, "visible: decoder width (0 = half the encoder's)"),
    "decoder_depth": key(2, POSITIVE_INT, "visible: decoder blocks"),
    "decoder_heads": key(0, COUNT, "visible: decoder attention heads (0 = decoder_dim / 64, at least 1)"),
}

OPTIM = {
    "lr": key(2.0e-3, POSITIVE, "per optim.base_batch_size samples; scaled by the global batch"),
    "base_batch_size": key(256, POSITIVE_INT, "the batch optim.lr is given for"),
    "weight_decay": key(0.05, number(0), "AdamW weight decay"),
    "betas": key([0.9, 0.999], sequence(RATE, 2), "AdamW betas"),
    "eps": key(1.0e-8, POSITIVE, "AdamW eps"),
    "clip_grad": key(0.02, number(0), "total L2 norm; 0 = off"),
    "warmup_epochs": key(1.0, number(0), "linear warm-up length"),
    "warmup_start_factor": key(1.0e-6, number(0, 1, lo_open=True), "warm-up starts at lr x this"),
    "min_lr": key(1.0e-6, number(0), "cosine schedule floor"),
}
LAYER_DECAY = key(0.65, FRACTION, "lr scale layer_decay^(L + 1 - level); 0 or 1 = off")

# run trackers beside log.jsonl (engine/logger.py WRITERS has one writer per name)
TRACKERS = ("tensorboard", "csv", "wandb")
REPORT_TO = Rule("a list of trackers, each one of " + ", ".join(TRACKERS),
                 lambda v: isinstance(v, list) and all(t in TRACKERS for t in v) and len(set(v)) == len(v))

# the text lines a run prints on stdout (engine/logger.py): mmengine's, the model zoos' dllogger ones, or both
TEXT_LOG_FORMATS = ("mmengine", "dllogger")
TEXT_LOG_FORMAT = Rule("mmengine, dllogger or a list of them ([mmengine, dllogger])",
                       lambda v: isinstance(v, list) and 0 < len(v) == len(set(v))
                       and all(f in TEXT_LOG_FORMATS for f in v))
DLLOGGER_PREFIX = pattern("a word of letters, digits, '_', '-' or '.'", r"[A-Za-z0-9_.\-]+")

TRAIN = {
    "epochs": key(12, POSITIVE_INT, "passes over the data"),
    "batch_size": key(32, POSITIVE_INT, "per process"),
    "accum_steps": key(1, POSITIVE_INT, "batches per optimizer step"),
    "amp": key("auto", AMP, "auto (bf16 if supported, else fp16; cpu: fp32) | bf16 | fp16 (autocast + "
               "dynamic GradScaler: mmpretrain's AMP) | none"),
    "compile": key(False, None, "torch.compile the whole model; falls back to eager on failure"),
    "compile_mode": key("default", choice("default", "reduce-overhead", "max-autotune",
                                          "max-autotune-no-cudagraphs"), "torch.compile mode"),
    "seed": key(0, None, "seeds the model, the data order, the crops and the masks"),
    "device": key("auto", DEVICE, "auto (the accelerator, else cpu) | cpu | type[:index]: cuda:1, npu, ..."),
    "device_modules": key([], MODULES, "plugins imported before choosing the device (torch_npu, ...)"),
    "output_dir": key("work_dirs/maskfeat_vit-mini_skimage", None, "the run folder"),
    "log_interval": key(10, POSITIVE_INT, "optimizer steps between log lines"),
    "ckpt_interval": key(5, POSITIVE_INT, "epochs between numbered checkpoints ('last': every epoch)"),
    "resume": key("auto", None, "auto: continue from <output_dir>/last.pth if any (finished: exit 0); a "
                  "path: from that checkpoint; '': from scratch (refused if output_dir holds a run)"),
    "overwrite": key(False, None, "start from scratch over a run in output_dir, removing its files"),
    "max_steps": key(0, COUNT, "stop after this many optimizer steps (0 = run all epochs)"),
    "max_nonfinite": key(10, POSITIVE_INT, "consecutive non-finite steps before the run stops"),
    "progress": key(True, None, "tqdm bar on stderr, shown only when stderr is a terminal"),
    "text_log": key("auto", choice("auto", "always", "never"),
                    "text line per log on stdout: auto (when not a tty) | always | never"),
    "text_log_format": key(["mmengine"], TEXT_LOG_FORMAT,
                           "the text lines: mmengine | dllogger (model zoos' 'TCAPPDLL ... Iteration: 10 "
                           "rank : 0 train.loss : ...') | [mmengine, dllogger]"),
    "dllogger_prefix": key("TCAPPDLL", DLLOGGER_PREFIX, "first word of each dllogger line"),
    "dllogger_ranks": key("main", choice("main", "all"),
                          "dllogger lines from rank 0 (main; its own loss, as mmengine logs it) or every "
                          "rank (all)"),
    "report_to": key(["tensorboard"], REPORT_TO, "trackers beside log.jsonl: tensorboard, csv (log.csv), "
                     "wandb (pip install 'maskfeat[wandb]'; WANDB_MODE=offline honoured); [] = none"),
}
EVAL_INTERVAL = key(1, POSITIVE_INT, "epochs between evaluations (and at the end)")

DIST = {"backend": key("auto", BACKEND, "torch.distributed backend: auto = torch's default for the device "
                       "type (nccl, xccl, hccl...), gloo on CPU; or a name")}
