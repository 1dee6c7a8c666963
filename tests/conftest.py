import pytest
import torch
from helpers import MMPRETRAIN_FIXTURE

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def mmpretrain_fixture():
    if not MMPRETRAIN_FIXTURE.is_file():
        pytest.skip(f"fixture {MMPRETRAIN_FIXTURE} not present (shared/ lies beside the repository)")
    return torch.load(MMPRETRAIN_FIXTURE, weights_only=True)
