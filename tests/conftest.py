import pytest
import torch

from helpers import MMPRETRAIN_FIXTURE, need

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def mmpretrain_fixture():
    need(MMPRETRAIN_FIXTURE.is_file(), f"fixture {MMPRETRAIN_FIXTURE} (shared/ lies beside the repository)")
    return torch.load(MMPRETRAIN_FIXTURE, weights_only=True)
