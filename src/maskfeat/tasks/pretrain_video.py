"""Video pre-training row: MViTv2 or a tubelet ViT with a mask token on clips, cube masks, per-token HOG."""
from __future__ import annotations

from ..data.loader import build_loader
from ..engine.distributed import DistEnv
from ..video.loader import build_video_pretrain_dataset
from ..video.model import build_video_model
from .pretrain import check_sizes, run  # noqa: F401  (run: the job's runner, which finds this row's builders)


def validate(cfg: dict) -> None:
    check_sizes(cfg)


def build_model(cfg: dict, device):
    return build_video_model(cfg)


def build_data(cfg: dict, env: DistEnv):
    dataset = build_video_pretrain_dataset(cfg)
    return dataset, build_loader(dataset, cfg["train"]["batch_size"], cfg["data"], env.rank, env.world,
                                 cfg["train"]["seed"])
