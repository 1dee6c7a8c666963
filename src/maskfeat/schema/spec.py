"""The valid range of every config key, checked in one pass over a resolved config before anything
is written. A task adds its own rows (architecture names, sizes that may be 0 = "as pre-trained").

A bad value is a one-line ``ConfigError``: ``optim.lr: nan is not valid; expected a finite number > 0``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..config import flatten
from ..errors import ConfigError


@dataclass(frozen=True)
class Rule:
    expect: str                        # what a valid value is, said in the error message
    ok: Callable[[Any], bool]


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number(lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False,
           integer: bool = False) -> Rule:
    """A finite number in the interval (open or closed at either end)."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    kind = "a whole number" if integer else "a finite number"
    if lo > -math.inf and hi == math.inf:
        expect = f"{kind} {'>' if lo_open else '>='} {lo:g}"
    else:
        expect = f"{kind} in {left}{lo:g}, {hi:g}{right}"

    def ok(v) -> bool:
        return (_real(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
                and (not integer or float(v).is_integer()))
    return Rule(expect, ok)


def choice(*names: str) -> Rule:
    return Rule("one of " + ", ".join(repr(n) for n in names), lambda v: v in names)


def optional(rule: Rule) -> Rule:
    """None (= the default behaviour) or a value the rule accepts."""
    return Rule(f"null or {rule.expect}", lambda v: v is None or rule.ok(v))


def sequence(rule: Rule, length: int, ordered: bool = False) -> Rule:
    """A list of ``length`` values each accepted by ``rule`` (``ordered``: non-decreasing)."""
    what = f"a list of {length} values, each {rule.expect}" + (", in increasing order" if ordered else "")
    return Rule(what, lambda v: isinstance(v, list) and len(v) == length and all(map(rule.ok, v))
                and (not ordered or all(a <= b for a, b in zip(v, v[1:]))))


def pattern(expect: str, regex: str) -> Rule:
    """A string matching ``regex`` whole."""
    return Rule(expect, lambda v: isinstance(v, str) and re.fullmatch(regex, v) is not None)


DEVICE = pattern("auto, cpu or a device type with an optional index (cuda, cuda:1, xpu, npu, ...)",
                 r"[a-z][a-z0-9_]*(:\d+)?")
MODULES = Rule("a list of module names", lambda v: isinstance(v, list) and all(
    isinstance(m, str) and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", m) for m in v))
BACKEND = pattern("auto or a process-group backend name (nccl, gloo, hccl, cpu:gloo,cuda:nccl, ...)",
                  r"\w+(:\w+)?(,\w+:\w+)*")

POSITIVE_INT = number(1, integer=True)
COUNT = number(0, integer=True)
POSITIVE = number(0, lo_open=True)
FRACTION = number(0, 1)                              # [0, 1]
OPEN_FRACTION = number(0, 1, lo_open=True, hi_open=True)
RATE = number(0, 1, hi_open=True)                    # [0, 1)

# a folder below data.root ('' = data.root itself): an absolute path would silently leave data.root out
SUB_FOLDER = Rule("a path relative to data.root ('' = data.root itself)",
                  lambda v: isinstance(v, str) and not v.startswith(("/", "\\")))

RULES: dict[str, Rule] = {
    # model / targets / masks
    "model.img_size": POSITIVE_INT, "model.patch_size": POSITIVE_INT, "model.num_frames": POSITIVE_INT,
    "model.tubelet_size": POSITIVE_INT, "model.drop_path_rate": RATE, "model.dropout": RATE,
    "model.target": choice("hog", "pixel"), "model.num_classes": COUNT, "model.head_init_std": POSITIVE,
    "model.ema_decay": FRACTION, "model.global_pool": choice("avg", "token"), "model.pool": choice("cls", "avg"),
    "model.head_pool": choice("cls", "mean"), "model.encoder": choice("full", "visible"),
    "model.decoder_dim": COUNT, "model.decoder_depth": POSITIVE_INT, "model.decoder_heads": COUNT,
    "hog.nbins": POSITIVE_INT, "hog.cell_size": POSITIVE_INT, "hog.patch_size": POSITIVE_INT,
    "hog.gaussian_window": COUNT, "hog.temporal_stride": POSITIVE_INT, "hog.impl": choice("auto", "compiled", "eager"),
    "mask.ratio": OPEN_FRACTION, "mask.min_num_patches": POSITIVE_INT, "mask.max_num_patches": optional(POSITIVE_INT),
    "mask.min_aspect": POSITIVE, "mask.max_aspect": optional(POSITIVE), "mask.max_tries": POSITIVE_INT,
    "mask.unit_size": sequence(POSITIVE_INT, 3),
    # data
    "data.samples_per_epoch": POSITIVE_INT, "data.scale": sequence(number(0, 1, lo_open=True), 2, ordered=True),
    "data.ratio": sequence(POSITIVE, 2, ordered=True), "data.hflip": FRACTION,
    "data.mean": sequence(number(), 3), "data.std": sequence(POSITIVE, 3), "data.num_workers": COUNT,
    "data.max_bad_fraction": FRACTION, "data.decode": choice("cpu", "device"), "data.crop_pct": number(0, 1, lo_open=True),
    "data.interpolation": choice("bicubic", "bilinear", "nearest", "random"), "data.train_subset": COUNT,
    "data.val_subset": COUNT, "data.sampling_rate": POSITIVE_INT, "data.short_side": COUNT,
    "data.decode_short_side": COUNT, "data.test_temporal_views": POSITIVE_INT, "data.test_spatial_views": choice(1, 3),
    "data.label_smoothing": RATE, "data.mixup": number(0), "data.cutmix": number(0), "data.rand_augment_ops": COUNT,
    "data.rand_augment_magnitude": number(0, 10), "data.random_erasing": FRACTION,
    "data.train_split": SUB_FOLDER, "data.val_split": SUB_FOLDER,
    "data.max_image_pixels": COUNT, "data.shuffle_buffer": COUNT, "data.video_decoder": choice("torchcodec", "pyav"),
    # augmentation (fine-tuning, linear probe)
    "aug.scale": sequence(number(0, 1, lo_open=True), 2, ordered=True), "aug.ratio": sequence(POSITIVE, 2, ordered=True),
    "aug.hflip": FRACTION, "aug.color_jitter": number(0), "aug.re_prob": FRACTION, "aug.re_mode": choice("const", "rand", "pixel"),
    "aug.re_count": POSITIVE_INT, "aug.mixup": number(0), "aug.cutmix": number(0), "aug.mixup_prob": FRACTION,
    "aug.mixup_switch_prob": FRACTION, "aug.mixup_mode": choice("batch", "pair", "elem"), "aug.label_smoothing": RATE,
    # optimisation
    "optim.lr": POSITIVE, "optim.base_batch_size": POSITIVE_INT, "optim.weight_decay": number(0),
    "optim.betas": sequence(RATE, 2), "optim.eps": POSITIVE, "optim.clip_grad": number(0),
    "optim.warmup_epochs": number(0), "optim.warmup_start_factor": number(0, 1, lo_open=True), "optim.min_lr": number(0),
    "optim.layer_decay": FRACTION, "optim.momentum": RATE, "optim.name": choice("sgd", "lars"),
    # training / evaluation loop
    "train.epochs": POSITIVE_INT, "train.batch_size": POSITIVE_INT, "train.accum_steps": POSITIVE_INT,
    "train.amp": choice("auto", "bf16", "fp16", "none"), "train.device": DEVICE,
    "train.compile_mode": choice("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "train.log_interval": POSITIVE_INT, "train.ckpt_interval": POSITIVE_INT, "train.eval_interval": POSITIVE_INT,
    "train.max_steps": COUNT, "train.max_nonfinite": POSITIVE_INT,
    "train.text_log": choice("auto", "always", "never"),
    "knn.k": POSITIVE_INT, "knn.temperature": POSITIVE, "eval.batch_size": POSITIVE_INT,
    "eval.amp": choice("auto", "bf16", "fp16", "none"), "eval.device": DEVICE,
    "train.device_modules": MODULES, "eval.device_modules": MODULES,
    "dist.backend": BACKEND,
}

# keys whose 0 / '' means "as the pre-trained checkpoint" in the evaluation tasks
AS_PRETRAINED = {"model.img_size": COUNT, "model.patch_size": COUNT}


def check_values(cfg: dict, extra: dict[str, Rule] | None = None) -> None:
    """Every key of ``cfg`` that has a rule (``extra`` rows first) holds a valid value, and the
    pairs that bound each other agree."""
    rules = {**RULES, **(extra or {})}
    flat = flatten(cfg)
    for key, value in flat.items():
        rule = rules.get(key)
        if rule is not None and not rule.ok(value):
            raise ConfigError(f"{key}: {value!r} is not valid; expected {rule.expect}")
    lo, hi = flat.get("mask.min_aspect"), flat.get("mask.max_aspect")
    if hi is not None and lo is not None and hi < lo:
        raise ConfigError(f"mask.max_aspect: {hi!r} is below mask.min_aspect {lo!r}")
    lo, hi = flat.get("mask.min_num_patches"), flat.get("mask.max_num_patches")
    if hi is not None and lo is not None and hi < lo:
        raise ConfigError(f"mask.max_num_patches: {hi!r} is below mask.min_num_patches {lo!r}")
