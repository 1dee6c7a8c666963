"""Video pre-training row: MViTv2 or a tubelet ViT with a mask token on clips, cube masks, per-token HOG."""
from __future__ import annotations

from ..config_checks import Rule
from ..data.loader import build_loader
from ..data.video_loader import build_video_pretrain_dataset
from ..engine.distributed import DistEnv
from ..models import ARCHS
from ..models import build_pretrain_model as build_video_model
from ..models.mvit import MVIT_ARCHS
from .pretrain import PretrainRow, check_pretrain

VIDEO_ARCHS = Rule("one of " + ", ".join(sorted(MVIT_ARCHS)) + " or vit3d-<name> with <name> one of "
                   + ", ".join(a.removeprefix("vit-") for a in ARCHS),
                   lambda a: a in MVIT_ARCHS
                   or (a.startswith("vit3d-") and "vit-" + a.removeprefix("vit3d-") in ARCHS))


def validate(cfg: dict) -> None:
    check_pretrain(cfg, VIDEO_ARCHS)


def build_model(cfg: dict, device):
    return build_video_model(cfg)


def build_data(cfg: dict, env: DistEnv):
    dataset = build_video_pretrain_dataset(cfg)
    return dataset, build_loader(dataset, cfg["train"]["batch_size"], cfg["data"], env.rank, env.world,
                                 cfg["train"]["seed"])


ROW = PretrainRow(build_model, build_data, build_video_pretrain_dataset)
run, build_trainer, preflight = ROW.run, ROW.build_trainer, ROW.preflight   # the row's builders at work
