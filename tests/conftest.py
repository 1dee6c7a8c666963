import os
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
MMPRETRAIN_FIXTURE = FIXTURES / "mmpretrain_maskfeat_vit-tiny2.pth"


@pytest.fixture(scope="session")
def mmpretrain_fixture():
    if not MMPRETRAIN_FIXTURE.is_file():
        pytest.skip(f"fixture {MMPRETRAIN_FIXTURE} not present (shared/ lies beside the repository)")
    return torch.load(MMPRETRAIN_FIXTURE, weights_only=True)


def tiny_pretrain_overrides(out_dir, **extra) -> list[str]:
    """Overrides for a seconds-long CPU pre-training run of `maskfeat pretrain`."""
    cfg = {
        "model.arch": "vit-pico", "model.img_size": 64, "mask.min_num_patches": 2,
        "data.samples_per_epoch": 64, "data.num_workers": 0, "train.batch_size": 8,
        "train.epochs": 2, "train.log_interval": 1, "train.output_dir": str(out_dir),
        "train.progress": False, "optim.warmup_epochs": 0.5,
    }
    cfg.update(extra)
    return [f"{k}={v}" for k, v in cfg.items()]


def cli_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    return env


PYTHON = sys.executable
