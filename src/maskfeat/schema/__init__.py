"""Config schemas, one per job (pretrain.py, finetune.py, linprobe.py, knn.py; shared sections in
common.py; how a key is declared in spec.py). Each job's keys carry their default, range and comment
together; ``check_values`` checks a resolved config against its own job's ranges in one pass, before
anything is written."""
from __future__ import annotations

from ..config import flatten
from ..errors import ConfigError
from .common import (  # noqa: F401
    DEFAULT_PRETRAINED,
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINETICS_MEAN,
    KINETICS_STD,
)
from .finetune import FINETUNE_JOB
from .knn import KNN_JOB
from .linprobe import LINPROBE_JOB
from .pretrain import PRETRAIN_JOB
from .spec import COUNT, Job, Rule

JOBS: dict[str, Job] = {j.name: j for j in (PRETRAIN_JOB, FINETUNE_JOB, LINPROBE_JOB, KNN_JOB)}
# (job, modality) -> (defaults, key -> Rule)
SCHEMAS = {(name, m): job.compile(m) for name, job in JOBS.items() for m in job.modalities}

PRETRAIN, VIDEO_PRETRAIN = SCHEMAS["pretrain", "image"][0], SCHEMAS["pretrain", "video"][0]
FINETUNE, VIDEO_FINETUNE = SCHEMAS["finetune", "image"][0], SCHEMAS["finetune", "video"][0]
LINPROBE, KNN = SCHEMAS["linprobe", "image"][0], SCHEMAS["knn", "image"][0]

# Every key's range over all jobs (the first job declaring a key wins): for a partial config
RULES: dict[str, Rule] = {}
for _defaults, _rules in SCHEMAS.values():
    for _k, _r in _rules.items():
        RULES.setdefault(_k, _r)

# keys whose 0 means "as the pre-trained checkpoint" in the evaluation tasks
AS_PRETRAINED = {"model.img_size": COUNT, "model.patch_size": COUNT}


def rules_of(flat: dict) -> dict[str, Rule]:
    """The ranges of the job whose schema has exactly these keys (a resolved config), else RULES."""
    keys = set(flat)
    for defaults, rules in SCHEMAS.values():
        if defaults["modality"] == flat.get("modality") and set(flatten(defaults)) == keys:
            return rules
    return RULES


def check_values(cfg: dict, extra: dict[str, Rule] | None = None) -> None:
    """Every key of ``cfg`` that has a rule (``extra`` rows first) holds a valid value, and the
    pairs that bound each other agree."""
    flat = flatten(cfg)
    rules = {**rules_of(flat), **(extra or {})}
    for key, value in flat.items():
        rule = rules.get(key)
        if rule is not None and isinstance(value, str) and value in rule.renamed:
            raise ConfigError(f"{key}: {value!r} was renamed {rule.renamed[value]!r}")
        if rule is not None and not rule.ok(value):
            raise ConfigError(f"{key}: {value!r} is not valid; expected {rule.expect}")
    _check_pairs(flat)


def _check_pairs(flat: dict) -> None:
    for lo_key, hi_key in (("mask.min_aspect", "mask.max_aspect"),
                           ("mask.min_num_patches", "mask.max_num_patches")):
        lo, hi = flat.get(lo_key), flat.get(hi_key)
        if hi is not None and lo is not None and hi < lo:
            raise ConfigError(f"{hi_key}: {hi!r} is below {lo_key} {lo!r}")
    mixing = flat.get("aug.mixup", 0) > 0 or flat.get("aug.cutmix", 0) > 0
    if mixing and flat.get("train.batch_size", 0) % 2:
        batch = flat["train.batch_size"]
        raise ConfigError(f"train.batch_size: Mixup / CutMix need an even batch, got {batch}")
